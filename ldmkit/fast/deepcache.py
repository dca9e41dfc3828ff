"""Feature caching across sampling steps, after DeepCache (Ma et al., 2024): a training-free shortcut.

Between neighbouring steps the UNet's deep features change little. Every `interval`-th call runs
the whole UNet and keeps the features entering its last `depth` output blocks (the shallow,
full-resolution end of the skip connections); the calls in between run only the first `depth`
input blocks and those last output blocks, on the kept deep features. With the default depth (the
first level's blocks) a cheap call skips the lower levels and the middle block: most of the work
of a UNet whose levels cost alike. It is approximate: what it costs in sample quality is measured
in docs/results/RECIPE.md. The state belongs to one sampling run: make a new one per run. When the
batch halves (classifier-free guidance stopping at the end of its noise interval), the cheap calls
carry on with the conditional half of the kept features; any other change of batch size makes a
full call.
"""

from __future__ import annotations

import torch

from ldmkit.unet.model import UNet


class DeepCacheUNet:
    """`unet(x_t, t, **conditioning)` with the deep features reused between full calls."""

    def __init__(self, unet: UNet, interval: int, depth: int | None = None):
        if interval < 1:
            raise ValueError(f"the cache interval must be >= 1, got {interval}")
        self.unet, self.interval = unet, interval
        self.depth = depth or 1 + unet.config.num_res_blocks  # the input conv and the first level's ResBlocks
        self.calls, self.cached = 0, None

    def __call__(self, x: torch.Tensor, t, context=None, concat=None, y=None) -> torch.Tensor:
        unet, depth = self.unet, self.depth
        h, emb, context = unet.inputs(x, t, context, concat, y)
        full = self.calls % self.interval == 0 or self.cached is None
        if not full and self.cached.shape[0] != x.shape[0]:
            # a guided batch [unconditional, conditional] (sampling/guidance.py) whose guidance just stopped (the
            # end of --guidance-interval): the conditional half's features carry on; any other size: a full call
            keep = self.cached.shape[0] == 2 * x.shape[0]
            self.cached, full = (self.cached[x.shape[0]:], False) if keep else (None, True)
        self.calls += 1
        skips = []
        for block in unet.input_blocks if full else unet.input_blocks[:depth]:
            h = block(h, emb, context)
            skips.append(h)
        if full:
            h = unet.middle_block(h, emb, context)
            for block in unet.output_blocks[:-depth]:
                h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
            self.cached = h  # (B, C, H', W'): what enters the last `depth` output blocks
        else:
            h = self.cached
        for block in unet.output_blocks[-depth:]:
            h = block(torch.cat([h, skips.pop()], dim=1), emb, context)
        return unet.out(h).to(x.dtype)
