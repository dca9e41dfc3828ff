"""ldmkit: Latent Diffusion Models (Rombach et al., CVPR 2022) as practical, offline-first software.

    import ldmkit
    pipe = ldmkit.load("runs/emoji/ldm")          # a model file, checkpoint or run folder
    images = pipe(n=4, steps=50, sampler="ddim", seed=0)  # PIL images
"""

__version__ = "0.1.0"


def load(path, device: str = "auto", use_ema: bool = True):
    """Load a latent diffusion model for sampling; see `ldmkit.pipeline.load`."""
    from ldmkit.pipeline import load as _load

    return _load(path, device=device, use_ema=use_ema)
