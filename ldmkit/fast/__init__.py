"""Speed-ups applied to a built model, kept out of the model code (which reads like the paper).

Every function here changes how a module computes, never what: the state dict stays the same and
the results differ by rounding only (bfloat16 aside, which the caller asks for).

    for_inference(model, device, dtype, compile)  the Pipeline's sampling path (inference.py): Winograd
                                                  convolutions, exact attention shortcuts, in-place
                                                  first-stage blocks, bfloat16 / channels_last, compile
    for_training(model)                           what the trainer applies: the attention kernels and a
                                                  Winograd first stage (frozen, so inference-only)
    for_encoding(first_stage)                     encoding a dataset once (`ldmkit cache-latents`)
    tiny_decoder_for_inference(decoder, ...)      a TAESD-style tiny decoder in the Pipeline's dtype
    for_frozen_features(network)                  a frozen feature network used as a loss (the perceptual
                                                  term): BatchNorm folded into the convolutions (frozen.py;
                                                  the one function here that rewrites weights)
    keep_freed_memory()                           glibc malloc keeps freed activations for reuse (allocator.py);
                                                  each entry point above applies it
"""

from __future__ import annotations

from torch import nn

from ldmkit.fast.allocator import keep_freed_memory
from ldmkit.fast.attention import use_fast_attention
from ldmkit.fast.frozen import fold_batchnorm, for_frozen_features
from ldmkit.fast.inference import compile_for_inference, for_inference, tiny_decoder_for_inference
from ldmkit.fast.inplace import use_inplace_blocks
from ldmkit.fast.winograd import use_winograd


def for_training(model: nn.Module) -> nn.Module:
    """A LatentDiffusion about to train: faster attention everywhere (its one-token shortcut only runs
    without gradients), and the frozen first stage's convolutions and blocks in their inference forms."""
    keep_freed_memory()
    use_fast_attention(model)
    for_encoding(model.first_stage)
    return model


def for_encoding(first_stage: nn.Module) -> nn.Module:
    """A frozen first stage that only encodes or decodes without gradients (float32 CPU: 1.1-1.5x)."""
    keep_freed_memory()
    return use_inplace_blocks(use_winograd(first_stage))


__all__ = ["compile_for_inference", "fold_batchnorm", "for_encoding", "for_frozen_features", "for_inference",
           "for_training", "keep_freed_memory", "tiny_decoder_for_inference", "use_fast_attention",
           "use_inplace_blocks", "use_winograd"]
