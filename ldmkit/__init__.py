"""ldmkit: Latent Diffusion Models (Rombach et al., CVPR 2022) as practical, offline-first software.

    import ldmkit
    pipe = ldmkit.load("runs/emoji/ldm")          # a model file, checkpoint or run folder
    images = pipe(n=4, steps=50, sampler="ddim", seed=0)  # PIL images
"""

__version__ = "0.1.0"


def load(path, device: str = "auto", use_ema: bool = True, config=None, text_encoder=None, dtype=None,
         compile: bool = False):
    """Load a latent diffusion model for sampling; see `ldmkit.pipeline.load`.

    Original CompVis checkpoints load directly: `load("model.ckpt", config="model.yaml")`, or a
    folder holding one checkpoint and one YAML (`ldmkit.interop.compvis.find_original_pair`);
    `text_encoder` is a local CLIP folder, needed for Stable Diffusion checkpoints only. So do
    diffusers pipeline folders (`load("ldm-folder")`, one with model_index.json; see
    `ldmkit.interop.foreign_models`). `dtype` (e.g. torch.bfloat16; None: float32) and `compile`
    select the fast inference path (`ldmkit.pipeline.fast`).
    """
    from ldmkit.interop.foreign_models import load_foreign
    from ldmkit.pipeline import Pipeline
    from ldmkit.pipeline import load as _load

    fast = {} if dtype is None else {"dtype": dtype}
    found = load_foreign(path, config, use_ema=use_ema, text_encoder=text_encoder)
    if found is None:
        return _load(path, device=device, use_ema=use_ema, compile=compile, **fast)
    from ldmkit.device import pick_device

    model, source = found
    return Pipeline(model, pick_device(device), source=str(source), use_ema=use_ema, compile=compile, **fast)
