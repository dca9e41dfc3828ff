"""Sampling with a trained LDM: seeds -> start noise -> sampler -> latents -> decoded images.

`Pipeline` is the one object both the Python API (`ldmkit.load(path)(n=4, seed=0)`) and the CLI
use. Image i of a call has seed `seed + i`; its start noise and every per-step noise come from a
CPU generator seeded with it, so an image does not depend on the batch it was drawn in or on the
device. Each returned PIL image carries its generation parameters in `image.info["ldmkit"]`
(JSON), which `save_png` writes as a PNG text chunk and `read_params` reads back
(pipeline/metadata.py). Every option is checked against the model before the first step: an
option the model cannot use, or a value outside its domain, is an error that says what it takes.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from PIL import Image

from ldmkit.data.images import to_pil
from ldmkit.device import available_memory
from ldmkit.diffusion.noise import randn_like_per_sample, seeded_generators
from ldmkit.errors import ConfigError, LdmkitError, ShapeError
from ldmkit.fast import for_inference, tiny_decoder_for_inference
from ldmkit.fast.deepcache import DeepCacheUNet
from ldmkit.pipeline import conditions, starts
from ldmkit.pipeline.metadata import PNG_KEY, file_sha256, image_metadata, to_json
from ldmkit.pipeline.model import LatentDiffusion
from ldmkit.pipeline.tiling import DECODE_OVERLAP, decode_tile_size, decode_tiled, first_stage_tile
from ldmkit.progress import progress
from ldmkit.sampling import DEFAULT_SAMPLER, DEFAULT_STEPS, SAMPLERS, sample, sampler_options
from ldmkit.sampling.blend import blended
from ldmkit.sampling.guidance import autoguidance, classifier_free_guidance, conditioned, in_interval

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed's range
SHORTCUTS = ("karras", "guidance_interval", "cache_interval")  # the sampling shortcuts a call takes (and records)
_NEGATIVE_WITH_GUIDE = ("a negative condition replaces classifier-free guidance's unconditional branch, and with a "
                        "guide model (autoguidance) the guide takes that place; drop the negative or the guide")


class Pipeline:
    """A loaded LDM on a device, ready to sample: `pipe(n=..., steps=..., sampler=..., guidance=..., seed=...)`."""

    def __init__(self, model: LatentDiffusion, device: torch.device | str = "cpu", source: str = "",
                 use_ema: bool = True, decode_tile: int | None = None, dtype: torch.dtype = torch.float32,
                 compile: bool = False):
        """`decode_tile`: latents larger than this (in latent pixels) decode in overlapping tiles; None: as
        large as keeps the decoder's largest activation within 128 MiB (pipeline/tiling.py).
        `dtype` (e.g. torch.bfloat16) and `compile`: the fast inference path, see ldmkit/fast/;
        they convert `model`'s UNet and decoder in place (on CPU the decoder goes channels_last in
        float32 too). On CPU without `compile`, `model`'s 3x3 convolutions become WinogradConv2d
        (fast/winograd.py: same parameters, faster float32 inference)."""
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self._unet, self._decode = for_inference(self.model, self.device, dtype, compile)
        self.source, self.use_ema = source, use_ema
        self.tiny_decoder: dict | None = None  # {"path", "file", "sha256"}: a tiny decoder decodes (use_tiny_decoder)
        self.decode_tile = first_stage_tile(model.config.first_stage, dtype)
        if decode_tile is not None:
            self.set_decode_tile(decode_tile)
        self.dtype, self.compiled = dtype, compile
        self.load_options: dict = {}  # how ldmkit.load read the model: config, text encoder, LoRA (for the metadata)
        self.guide: Pipeline | None = None  # autoguidance's weaker model (pipeline/guide.py), used when guidance != 1

    def use_tiny_decoder(self, decoder, record: dict) -> None:
        """Decode with `decoder` (autoencoder/tiny.py: TAESD-style) instead of the first stage's decoder:
        about a twentieth of the work, an approximation of its images. `record` goes into every image's
        parameters: {"path": what was given, "file": its weights file, "sha256": that file's}."""
        fs, cfg, where = self.config.first_stage, decoder.config, f"the tiny decoder {record['path']}"
        if fs.kind == "identity":
            raise ConfigError(f"{where}: this model samples pixels (first_stage: identity); there is no decoder to "
                              "replace")
        if (cfg.latent_channels, cfg.factor) != (fs.latent_channels, self.model.factor):
            raise ConfigError(f"{where} decodes {cfg.latent_channels}-channel latents {cfg.factor}x up, this model's "
                              f"first stage {fs.latent_channels}-channel latents {self.model.factor}x; give one made "
                              "for its first stage")
        if cfg.scale_factor is not None and not math.isclose(cfg.scale_factor, self.config.scale_factor,
                                                             rel_tol=1e-4):
            raise ConfigError(f"{where} was trained on latents scaled by {cfg.scale_factor:.6g}, this model samples "
                              f"them scaled by {self.config.scale_factor:.6g}; train one for this model's scale")
        self._decode = tiny_decoder_for_inference(decoder, self.device, self.dtype)  # replaces the first stage's
        self.decode_tile = decode_tile_size(cfg.channels, cfg.factor, self.dtype)
        self.tiny_decoder = record

    def set_decode_tile(self, tile: int) -> None:
        """Decode latents larger than `tile` latent pixels in overlapping tiles (with whichever decoder decodes:
        the first stage's or the tiny one); images record it, and --from-png sets it back."""
        if isinstance(tile, bool) or not isinstance(tile, int) or tile <= DECODE_OVERLAP:
            raise ConfigError(f"the decode tile must be a whole number of latent pixels above the tiles' overlap of "
                              f"{DECODE_OVERLAP}, got {tile!r}")
        self.decode_tile = tile

    def guide_record(self) -> dict | None:
        """The guide model (path and sha256) as images and evaluations record it, None without one."""
        if self.guide is None:
            return None
        return {"checkpoint": self.guide.source, "sha256": file_sha256(self.guide.source)}

    def recorded(self, params: dict) -> dict:
        """`params` (steps, sampler, guidance, ...) as an image records them: with the guide model when
        autoguidance acted (guidance != 1) and the tiny decoder when one decodes, which --from-png needs
        to make the same image again."""
        if self.guide is not None and params["guidance"] != 1.0:
            params = {**params, "guide": self.guide_record()}
        if self.tiny_decoder is not None:
            params = {**params, "tiny_decoder": self.tiny_decoder}
        return {**params, "decode_tile": self.decode_tile}

    @property
    def config(self):
        return self.model.config

    def check(self, steps: int, sampler: str, guidance: float, eta: float | None,
              guidance_interval: tuple[float, float] | None = None, cache_interval: int | None = None,
              karras: bool = False) -> None:
        """A clear error for a sampling option this model or sampler cannot use, before any work."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler {sampler!r} is unknown; choose one of {', '.join(SAMPLERS)}")
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ConfigError(f"steps must be a whole number >= 1, got {steps!r}")
        if steps > self.config.diffusion.timesteps:
            raise ConfigError(f"steps must be at most the model's {self.config.diffusion.timesteps} training "
                              f"timesteps, got {steps}; use fewer")
        if not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
            raise ConfigError(f"guidance must be a finite number >= 0, got {guidance!r}; use e.g. 3, or 1 for no "
                              "guidance")
        if guidance != 1.0 and not self.config.conditioning.kinds and self.guide is None:
            raise ConfigError("classifier-free guidance needs a conditional model, and this one is unconditional "
                              f"(it takes {conditions.accepts(self.config.conditioning)}); drop the guidance, or "
                              "give a guide model (--guide: autoguidance)")
        if eta is not None:
            if "eta" not in sampler_options(sampler):
                takers = ", ".join(name for name in SAMPLERS if "eta" in sampler_options(name))
                raise ConfigError(f"sampler {sampler!r} has no eta (only {takers} do); drop it")
            top = 1 if sampler == "ddim" else math.inf  # DDIM's sigma needs eta <= 1; ancestral steps clamp theirs
            if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not 0 <= eta <= top or eta == math.inf:
                raise ConfigError(f"eta must be a number {'in [0, 1] for ddim' if top == 1 else '>= 0'}, got {eta!r}; "
                                  "use 0 (deterministic) to 1 (the usual amount of fresh noise)")
        if guidance_interval is not None:
            low, high = guidance_interval
            if guidance == 1.0:
                raise ConfigError("a guidance interval limits classifier-free guidance; set guidance above 1")
            if not (math.isfinite(low) and 0 <= low < high):
                raise ConfigError(f"a guidance interval is two noise levels 0 <= low < high (sigma), got {low}, {high}")
        if cache_interval is not None:
            if isinstance(cache_interval, bool) or not isinstance(cache_interval, int) or cache_interval < 1:
                raise ConfigError(f"the feature-cache interval must be a whole number >= 1, got {cache_interval!r}")
            if self.compiled:
                raise ConfigError("feature caching runs parts of the UNet, which a compiled pipeline cannot; drop "
                                  "compile or the cache interval")
        if karras and "karras" not in sampler_options(sampler):
            takers = ", ".join(name for name in SAMPLERS if "karras" in sampler_options(name))
            raise ConfigError(f"Karras noise levels are for the sigma-space samplers ({takers}), not {sampler!r}")

    @torch.no_grad()
    def latents(self, seeds: Sequence[int], cond: Any = None, steps: int = DEFAULT_STEPS,
                sampler: str = DEFAULT_SAMPLER, guidance: float = 1.0, eta: float | None = None,
                height: int | None = None, width: int | None = None, callback: Callable[[dict], None] | None = None,
                x_T: torch.Tensor | None = None, negative: Any = None, init: torch.Tensor | None = None,
                strength: float | None = None, mask: torch.Tensor | None = None,
                guidance_interval: tuple[float, float] | None = None, cache_interval: int | None = None,
                karras: bool = False) -> torch.Tensor:
        """Sampled latents (B, C, h, w) in the diffusion model's (scaled) space, one per seed.

        `cond` and `negative` are conditions in the conditioner's tensor form (see
        ldmkit/conditioning/base.py); `negative` replaces the unconditional branch of guidance.
        `init` (B, C, h, w) latents and `strength`: start part-way from them (sampling/img2img.py);
        with `mask` (B, 1, h, w), 1 = fill, the rest of `init` is kept (sampling/blend.py).
        `guidance_interval` (low, high): guide only at noise levels sigma in (low, high], one conditional
        UNet call elsewhere; `cache_interval` k: DeepCache-style feature reuse, the whole UNet every k-th
        call (fast/deepcache.py); `karras`: Karras et al.'s noise levels for the sigma-space samplers.
        `x_T` replaces the start noise drawn from the seeds (e.g. a tile of a larger noise field);
        the seeds' generators still drive the per-step noise of stochastic samplers."""
        self.check(steps, sampler, guidance, eta, guidance_interval, cache_interval, karras)
        model = self.model
        shape = self.check_size(len(seeds), *self.size(height, width))
        generators = seeded_generators(seeds)  # CPU: the same noise on every device
        if x_T is None:
            x_T = randn_like_per_sample((len(seeds), *shape), generators, self.device, torch.float32)
        elif tuple(x_T.shape) != (len(seeds), *shape):
            raise LdmkitError(f"x_T has shape {tuple(x_T.shape)}, expected {(len(seeds), *shape)}")
        x_T = x_T.to(self.device, torch.float32)
        raw, cond = cond, model.condition(cond)
        network = self._unet if cache_interval is None else DeepCacheUNet(self.model.unet, cache_interval)
        guide_at = None if guidance_interval is None else in_interval(model.schedule, *guidance_interval)
        if self.guide is not None and guidance != 1.0:
            if negative is not None:
                raise ConfigError(_NEGATIVE_WITH_GUIDE)
            weak = self.guide._unet if cache_interval is None else DeepCacheUNet(self.guide.model.unet, cache_interval)
            unet = autoguidance(network, cond, weak, self.guide.model.condition(raw), guidance, guide_at)
        elif cond and guidance != 1.0:
            null = model.condition(negative) if negative is not None else model.null_condition(len(seeds), self.device)
            unet = classifier_free_guidance(network, cond, null, guidance, guide_at=guide_at)
        else:
            unet = conditioned(network, cond)
        if mask is not None:
            mask = mask.to(self.device, torch.float32)
            unet = blended(unet, model.schedule, init, mask, x_T)
        diffusion = self.config.diffusion
        options = {"prediction": diffusion.prediction, "callback": callback}
        # every sampler visits the timesteps (or their sigmas) the model's config asks for; Karras levels span the
        # whole schedule whatever the spacing (k-diffusion's choice; diffusers' Karras would shift with "leading")
        if "offset" in sampler_options(sampler) and not karras:
            options.update(spacing=diffusion.timestep_spacing, offset=diffusion.steps_offset)
        if eta is not None:
            options["eta"] = eta
        if karras:
            options["karras"] = True
        if init is not None:
            options.update(init=init.to(self.device, torch.float32), strength=strength)
        z = sample(sampler, unet, x_T, model.schedule, steps, generators, **options)
        return z if mask is None else mask * z + (1 - mask) * init.to(z)

    def size(self, height: int | None, width: int | None) -> tuple[int, int]:
        """(height, width) in pixels: the model's training size where one is None."""
        default = self.config.image_size
        return (default if height is None else height, default if width is None else width)

    def check_size(self, batch: int, height: int, width: int) -> tuple[int, int, int]:
        """The latent shape (C, h, w) of a height x width image; a clear error where the model cannot take
        that size, or where the UNet's activations alone would not fit in the device's free memory."""
        shape = self.model.latent_shape(height, width)
        need = batch * self.config.unet.held_values(*shape[1:]) * self.dtype.itemsize
        free = available_memory(self.device)
        if free is not None and need > free:
            raise ShapeError(f"{width}x{height} px in batches of {batch} needs more than {need / 2**30:.1f} GiB for "
                             f"the UNet's activations alone, and {self.device.type} has {free / 2**30:.1f} GiB free; "
                             "ask for a smaller image or batch")
        return shape

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [-1, 1] -> scaled latents (the posterior mode for KL first stages)."""
        return self.model.encode(images.to(self.device, torch.float32))

    @torch.no_grad()
    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents -> images (B, 3, H, W) in [-1, 1]; large latents are decoded in tiles."""
        return decode_tiled(self._decode, z, self.model.factor, tile=self.decode_tile).clamp(-1, 1)

    def __call__(self, n: int = 1, steps: int = DEFAULT_STEPS, sampler: str = DEFAULT_SAMPLER, guidance: float = 1.0,
                 seed: int = 0,
                 eta: float | None = None, height: int | None = None, width: int | None = None,
                 condition: Any = None, batch_size: int = 8, show_progress: bool = False,
                 callback: Callable[[dict], None] | None = None, negative: Any = None, init_image: Any = None,
                 strength: float | None = None, mask: Any = None, guidance_interval: tuple[float, float] | None = None,
                 cache_interval: int | None = None, karras: bool = False) -> list[Image.Image]:
        """`n` PIL images with seeds seed, seed + 1, ...; at most `batch_size` are sampled at once.

        `condition`: one for every image or a list with one per image (pipeline/conditions.py);
        `negative`: a condition of the same kind in place of the unconditional one in guidance (a
        negative prompt or class). `init_image` (a PIL image or (3, H, W) tensor, or one per image) and
        `strength` in [0, 1]: img2img (SDEdit), 0 keeps the image, 1 ignores it; with `mask` (white / 1 =
        fill) only the masked part changes, with any model (inpainting by blending).
        `guidance_interval`, `cache_interval`, `karras`: see `latents`.
        `callback(info)` is called after every step with the sampler's report plus "image" (the
        index of the batch's first image) and "images" (n)."""
        for name, value in (("n", n), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED - n:
            raise ConfigError(f"seed must be a whole number in [0, {MAX_SEED - n}] for {n} images (image i gets seed "
                              f"+ i), got {seed!r}")
        shortcuts = {"guidance_interval": guidance_interval, "cache_interval": cache_interval, "karras": karras}
        self.check(steps, sampler, guidance, eta, **shortcuts)
        cfg = self.config.conditioning
        inits = starts.init_items(self.model, init_image, strength, mask, n)
        items = conditions.items(cfg, condition, n)
        negatives = self._negatives(negative, n, guidance)
        sizes = {conditions.image_size(cfg, item) for item in items} | {starts.size(i) for i in inits}
        sizes -= {None}
        if len(sizes) > 1:
            raise LdmkitError(f"the conditions and init images ask for images of different sizes {sorted(sizes)}; "
                              "give them one size")
        asked = sizes.pop() if sizes else None
        if asked and (height, width) not in ((None, None), asked):
            raise ConfigError(f"the condition or init image sets the image size to {asked[1]}x{asked[0]} px; drop "
                              "height/width")
        height, width = asked or self.size(height, width)
        try:
            self.check_size(min(n, batch_size), height, width)  # a clear error, before any work
        except ShapeError as err:
            if asked is None:
                raise
            raise ShapeError(f"the condition or init image is {width}x{height} px, which sets the image size: "
                             f"{err} (resize it)") from err
        params = self.recorded({"steps": steps, "sampler": sampler, "guidance": guidance, "eta": eta,
                                "height": height, "width": width, **{k: v for k, v in shortcuts.items() if v}})
        if inits[0] is not None:
            params["strength"] = starts.DEFAULT_STRENGTH if strength is None else strength
        images = []
        bar = progress(total=n, desc="sampling", unit="img", disable=not show_progress)
        for start in range(0, n, batch_size):
            seeds = [seed + i for i in range(start, min(n, start + batch_size))]
            batch = slice(start, start + len(seeds))

            def report(info: dict, start: int = start) -> None:
                bar.set_postfix(step=f"{info['i'] + 1}/{info['steps']}", refresh=False)
                if callback is not None:
                    callback({**info, "image": start, "images": n})

            negative_batch = None if negatives is None else conditions.tensors(cfg, negatives[batch])
            init, mask_z = starts.latents(self, inits[batch])
            z = self.latents(seeds, conditions.tensors(cfg, items[batch]), steps, sampler, guidance, eta, height, width,
                             callback=report, negative=negative_batch, init=init, strength=params.get("strength"),
                             mask=mask_z, **shortcuts)
            decoded = starts.composite(self.decode(z), inits[batch])
            for i, x in enumerate(decoded):
                image = to_pil(x)
                extra = {} if negatives is None else {"negative": to_json(negatives[start + i])}
                image.info[PNG_KEY] = image_metadata(self, params, seeds, i, items[start + i],
                                                     **extra, **starts.describe(inits[start + i]))
                images.append(image)
            bar.update(len(seeds))
        bar.close()
        return images

    def _negatives(self, negative: Any, n: int, guidance: float) -> list[Any] | None:
        """Per-image negative conditions, checked: they act through guidance, on context conditions."""
        if negative is None:
            return None
        cfg = self.config.conditioning
        if cfg.hybrid != "none" or cfg.kind not in ("class", "text", "layout"):
            raise ConfigError(f"a negative condition replaces the unconditional class, caption or layout of guidance; "
                              f"this model takes {conditions.accepts(cfg)}, which has none")
        if guidance == 1.0:
            raise ConfigError("a negative condition acts through classifier-free guidance; set guidance above 1")
        if self.guide is not None:
            raise ConfigError(_NEGATIVE_WITH_GUIDE)
        return conditions.items(cfg, negative, n)
