"""ldmkit: Latent Diffusion Models (Rombach et al., CVPR 2022) as practical, offline-first software.

    import ldmkit
    pipe = ldmkit.load("runs/emoji/ldm")          # a model file, checkpoint or run folder
    images = pipe(n=4, seed=0)                    # PIL images (Euler ancestral, 30 steps)
"""

from ldmkit.version import __version__

__all__ = ["__version__", "load"]


def load(path, device: str = "auto", use_ema: bool = True, config=None, text_encoder=None, dtype=None,
         compile: bool = False, lora=None, guide=None, tiny_decoder=None):
    """A ready-to-sample `ldmkit.pipeline.Pipeline` from any model ldmkit reads.

    - ldmkit: a model file, a checkpoint folder or a run folder (its latest checkpoint); EMA
      weights unless use_ema=False.
    - CompVis / Stable Diffusion v1: `load("model.ckpt", config="model.yaml")`, or a folder holding
      one checkpoint and one YAML (`ldmkit.interop.compvis.find_original_pair`); `text_encoder` is a
      local CLIP folder, needed for Stable Diffusion checkpoints only.
    - diffusers: a pipeline folder with model_index.json (`ldmkit.interop.foreign_models`).
    `dtype` (torch.bfloat16, "bfloat16", ...; None: float32, the reference; "auto": bfloat16 where the
    device multiplies it natively, as the CLI's default) and `compile` select the fast inference path
    (`ldmkit.fast`). `lora`: LoRA adapters merged into the weights first, a path or a list of paths and
    (path, weight) pairs: ldmkit LoRA runs or files, kohya / diffusers LoRA files (`ldmkit.lora`).
    `guide`: a weaker model of the same latent space (e.g. an early checkpoint of the run) for
    autoguidance: with it, `guidance` mixes the model with the guide instead of the unconditional
    branch, which unconditional models can use too (`ldmkit.pipeline.guide`).
    `tiny_decoder`: a TAESD-style decoder (a diffusers AutoencoderTiny folder, TAESD's decoder file or an
    ldmkit one: `ldmkit.interop.tiny_decoder`) that decodes instead of the first stage's decoder, at a
    fraction of its cost (`ldmkit.autoencoder.tiny`).
    """
    from pathlib import Path

    import torch

    from ldmkit.device import pick_device, pick_dtype
    from ldmkit.interop.foreign_models import load_any_ldm
    from ldmkit.lora.files import adapter_records, apply_adapters, as_specs
    from ldmkit.pipeline import Pipeline
    from ldmkit.pipeline.guide import check_guide

    specs = as_specs(lora)
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    unet_dtype = torch.float32 if specs else dtype  # adapters apply in float32, then the Pipeline casts
    model, source = load_any_ldm(path, config, use_ema, text_encoder, unet_dtype)
    apply_adapters(model, specs)  # before the Pipeline: its fast path rewrites the layers
    weak = None
    if guide is not None:
        if not Path(guide).exists():
            from ldmkit.errors import DataError

            raise DataError(f"the guide model {guide} does not exist; give a run folder, checkpoint folder or model "
                            "file (e.g. RUN/checkpoints/step-00000200)")
        weak, guide_source = load_any_ldm(guide, None, use_ema, text_encoder, unet_dtype)
        check_guide(model, weak, str(guide))
    pipe = Pipeline(model, device, source=str(source), use_ema=use_ema, dtype=dtype, compile=compile)
    if weak is not None:
        pipe.guide = Pipeline(weak, device, source=str(guide_source), use_ema=use_ema, dtype=dtype, compile=compile)
    if tiny_decoder is not None:
        from ldmkit.interop.tiny_decoder import load_tiny_decoder, weights_file
        from ldmkit.pipeline.metadata import file_sha256

        decoder = load_tiny_decoder(tiny_decoder)
        file = weights_file(tiny_decoder)
        pipe.use_tiny_decoder(decoder, {
            "path": str(Path(tiny_decoder).resolve()), "file": str(file.resolve()), "sha256": file_sha256(file)})
    pipe.load_options = {"config": None if config is None else str(Path(config).resolve()),
                         "text_encoder": None if text_encoder is None else str(Path(text_encoder).resolve()),
                         "lora": adapter_records(specs)}  # in every image's parameters, for --from-png
    return pipe
