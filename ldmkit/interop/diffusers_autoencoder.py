"""ldmkit autoencoders <-> diffusers `AutoencoderKL` / `VQModel`: configs and state dicts.

Config correspondence (ldmkit AutoencoderConfig -> diffusers):
  ch * ch_mult -> block_out_channels; num_res_blocks -> layers_per_block; in_channels -> in_channels
  and out_channels; z_channels -> latent_channels; KL: embed_dim must equal z_channels (diffusers'
  quant_conv maps 2 z -> 2 z); VQ: embed_dim -> vq_embed_dim, n_embed -> num_vq_embeddings.
  A level with self-attention (its factor in attn_factors) is an AttnDownEncoderBlock2D /
  AttnUpDecoderBlock2D, else DownEncoderBlock2D / UpDecoderBlock2D; up_block_types run from the
  deepest level (diffusers' order), down_block_types from full resolution.
  scaling_factor is the LDM's scale_factor (LDMConfig.scale_factor), passed separately.
Fixed on the diffusers side: silu, 32 groups, quant convs and mid-block attention present,
  norm_type "group", no shift_factor / latents_mean / latents_std.
Hints diffusers reads and ldmkit has no use for: `force_upcast` (pipelines upcast the VAE to
  float32 under float16; written as diffusers' default, True for KL and False for VQ, ignored on
  import), `lookup_from_codebook` (VQModel.decode(..., force_not_quantize=True) then takes code
  indices; ldmkit always decodes continuous latents by quantising them first, which is diffusers'
  default decode, so the flag is written False and ignored on import), `sample_size` (tiling only).
Training-only ldmkit settings with no diffusers field are not carried: dropout, the VQ commitment
  weight beta, and the dead-code restart (an imported VQ model has vq_restart_every = 0; its
  `usage` / `calls` buffers are dropped on export and start fresh on import).

Key correspondence (ldmkit keeps CompVis' names):
  encoder.down.{i}.block.{j} / .attn.{j} / .downsample.conv
    <-> encoder.down_blocks.{i}.resnets.{j} / .attentions.{j} / .downsamplers.0.conv
  decoder.up.{i}.* <-> decoder.up_blocks.{levels - 1 - i}.* (upsample.conv <-> upsamplers.0.conv)
  *.mid.block_1 / attn_1 / block_2 <-> *.mid_block.resnets.0 / attentions.0 / resnets.1
  *.norm_out <-> *.conv_norm_out; ResnetBlock nin_shortcut <-> conv_shortcut
  AttnBlock norm / q / k / v / proj_out (1x1 convs) <-> group_norm / to_q / to_k / to_v / to_out.0 (Linear)
"""

from __future__ import annotations

import torch

from ldmkit.autoencoder.config import GROUPS, AutoencoderConfig
from ldmkit.autoencoder.model import Autoencoder, build_autoencoder
from ldmkit.errors import ConfigError
from ldmkit.interop.tensor_files import Link, link_sources, module_links
from ldmkit.state_dicts import converted_state_dict

CLASSES = {"kl": "AutoencoderKL", "vq": "VQModel"}
IGNORED = ("sample_size", "scaling_factor", "force_upcast", "lookup_from_codebook")  # see the module docstring
ATTENTION = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
VQ_BOOKKEEPING = ("quantize.usage", "quantize.calls")


def _unsupported(key: str, message: str) -> ConfigError:
    return ConfigError(f"autoencoder config key '{key}': diffusers cannot express this model: {message}")


def diffusers_config(cfg: AutoencoderConfig, scale_factor: float = 1.0,
                     sample_size: int | None = None) -> tuple[str, dict]:
    """(diffusers class name, its config kwargs) for the autoencoder `cfg`; `scale_factor` is the LDM's."""
    if cfg.kind not in CLASSES:
        raise _unsupported("kind", f"{cfg.kind!r} has no diffusers model; use 'kl' or 'vq'")
    attn = [2**i in cfg.attn_factors for i in range(len(cfg.ch_mult))]
    config = dict(in_channels=cfg.in_channels, out_channels=cfg.in_channels,
                  down_block_types=tuple("AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attn),
                  up_block_types=tuple("AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attn)),
                  block_out_channels=tuple(cfg.ch * m for m in cfg.ch_mult), layers_per_block=cfg.num_res_blocks,
                  act_fn="silu", latent_channels=cfg.z_channels, norm_num_groups=GROUPS,
                  scaling_factor=float(scale_factor), mid_block_add_attention=True)
    if sample_size is not None:
        config["sample_size"] = sample_size
    if cfg.kind == "kl":
        if cfg.embed_dim != cfg.z_channels:
            raise _unsupported("embed_dim", f"AutoencoderKL has one latent width, but z_channels={cfg.z_channels} "
                                            f"and embed_dim={cfg.embed_dim} differ")
        return "AutoencoderKL", dict(config, shift_factor=None, latents_mean=None, latents_std=None,
                                     force_upcast=True, use_quant_conv=True, use_post_quant_conv=True)
    return "VQModel", dict(config, num_vq_embeddings=cfg.n_embed, vq_embed_dim=cfg.embed_dim, norm_type="group",
                           lookup_from_codebook=False, force_upcast=False)


def _equal(given, expected) -> bool:
    if isinstance(expected, tuple):
        given = tuple(given) if isinstance(given, (list, tuple)) else given
    return given == expected


def config_from_diffusers(class_name: str, config: dict) -> tuple[AutoencoderConfig, float]:
    """(AutoencoderConfig, scale_factor) of a diffusers AutoencoderKL / VQModel config (e.g. `model.config`).

    Raises ConfigError for a diffusers option ldmkit cannot express (the config is converted back
    and every key compared).
    """
    kind = {v: k for k, v in CLASSES.items()}.get(class_name)
    if kind is None:
        raise ConfigError(f"diffusers class {class_name!r} is not an autoencoder ldmkit reads; "
                          "use AutoencoderKL or VQModel")
    widths = tuple(config.get("block_out_channels", (64,)))
    ch = widths[0]
    if any(w % ch for w in widths):
        raise ConfigError(f"diffusers block_out_channels {list(widths)}: ldmkit needs multiples of the first width")
    latent = config.get("latent_channels", 4 if kind == "kl" else 3)
    down = config.get("down_block_types", ("DownEncoderBlock2D",))
    kwargs = dict(kind=kind, in_channels=config.get("in_channels", 3), ch=ch, ch_mult=tuple(w // ch for w in widths),
                  num_res_blocks=config.get("layers_per_block", 1), z_channels=latent,
                  attn_factors=tuple(2**i for i, name in enumerate(down) if name.startswith("Attn")))
    if kind == "kl":
        cfg = AutoencoderConfig(**kwargs, embed_dim=latent)
    else:
        cfg = AutoencoderConfig(**kwargs, embed_dim=config.get("vq_embed_dim") or latent,
                                n_embed=config.get("num_vq_embeddings", 256), vq_restart_every=0)
    _, expected = diffusers_config(cfg)
    for key, value in expected.items():
        if key in config and key not in IGNORED and not _equal(config[key], value):
            raise ConfigError(f"diffusers config key '{key}' = {config[key]!r} has no ldmkit equivalent "
                              f"(ldmkit's nearest model has {value!r})")
    return cfg, float(config.get("scaling_factor", 0.18215))


# ---- state dicts -------------------------------------------------------------------------------
# A converter takes the name of a tensor inside one module (e.g. "nin_shortcut.weight") and returns its Link
# to the diffusers module's tensors; links() prefixes both sides with the modules' names.

def _rename(names: dict[str, str]):
    def convert(param: str) -> Link:
        module, _, name = param.rpartition(".")
        return Link(param, (f"{names.get(module, module)}.{name}",))

    return convert


def _attention(param: str) -> Link:
    link = _rename(ATTENTION)(param)
    if param.endswith(".weight") and not param.startswith("norm."):  # 1x1 conv <-> Linear
        return Link(param, link.theirs, lambda w: w[:, :, None, None], (lambda w: w[:, :, 0, 0],))
    return link


def _same(param: str) -> Link:
    return Link(param, (param,))


def _module_pairs(cfg: AutoencoderConfig) -> list[tuple[str, str, object]]:
    """(ldmkit prefix, diffusers prefix, converter) for every module with parameters."""
    diffusers_config(cfg)  # raises for what diffusers cannot express
    resnet = _rename({"nin_shortcut": "conv_shortcut"})
    levels = len(cfg.ch_mult)
    pairs = [("quant_conv", "quant_conv", _same), ("post_quant_conv", "post_quant_conv", _same)]
    if cfg.kind == "vq":
        pairs.append(("quantize.embedding", "quantize.embedding", _same))
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.conv_in", f"{part}.conv_in", _same), (f"{part}.norm_out", f"{part}.conv_norm_out", _same),
                  (f"{part}.conv_out", f"{part}.conv_out", _same),
                  (f"{part}.mid.block_1", f"{part}.mid_block.resnets.0", resnet),
                  (f"{part}.mid.attn_1", f"{part}.mid_block.attentions.0", _attention),
                  (f"{part}.mid.block_2", f"{part}.mid_block.resnets.1", resnet)]
    for i in range(levels):
        has_attention = 2**i in cfg.attn_factors
        for part, ours, theirs, blocks, resample in (
                ("encoder", f"encoder.down.{i}", f"encoder.down_blocks.{i}", cfg.num_res_blocks, "downsample"),
                ("decoder", f"decoder.up.{i}", f"decoder.up_blocks.{levels - 1 - i}", cfg.num_res_blocks + 1,
                 "upsample")):
            for j in range(blocks):
                pairs.append((f"{ours}.block.{j}", f"{theirs}.resnets.{j}", resnet))
                if has_attention:
                    pairs.append((f"{ours}.attn.{j}", f"{theirs}.attentions.{j}", _attention))
            if (part == "encoder" and i != levels - 1) or (part == "decoder" and i != 0):
                pairs.append((f"{ours}.{resample}.conv", f"{theirs}.{resample}rs.0.conv", _same))
    return pairs


def links(cfg: AutoencoderConfig) -> list[Link]:
    """The Link of every tensor of `build_autoencoder(cfg)`'s state dict to diffusers' (see the module
    docstring): renames, 1x1 conv <-> Linear reshapes, and the dead-code restart's bookkeeping, which
    diffusers has no tensors for (fresh on import, dropped on export)."""
    with torch.device("meta"):
        keys = list(build_autoencoder(cfg).state_dict())
    usage, calls = VQ_BOOKKEEPING
    fresh = {usage: lambda: torch.full((cfg.n_embed,), 1.0 / cfg.n_embed),
             calls: lambda: torch.zeros((), dtype=torch.long)}  # as a new VectorQuantizer starts
    return (module_links([k for k in keys if k not in fresh], _module_pairs(cfg))
            + [Link(k, (), fresh[k]) for k in keys if k in fresh])


def to_diffusers_state_dict(state_dict: dict, cfg: AutoencoderConfig) -> dict:
    """An ldmkit (= CompVis `first_stage_model.*` without the prefix) autoencoder state dict in diffusers' names."""
    weights = {k: v for k, v in state_dict.items() if k not in VQ_BOOKKEEPING}  # restart bookkeeping, not weights
    return converted_state_dict(link_sources(links(cfg), to_ours=False), weights, "the ldmkit autoencoder state dict")


def from_diffusers_state_dict(state_dict: dict, cfg: AutoencoderConfig) -> dict:
    """A diffusers AutoencoderKL / VQModel state dict in ldmkit's names, for `build_autoencoder(cfg)`."""
    return converted_state_dict(link_sources(links(cfg), to_ours=True), state_dict,
                                "the diffusers autoencoder state dict")


def to_diffusers(model: Autoencoder, scale_factor: float = 1.0):
    """A diffusers AutoencoderKL / VQModel with `model`'s weights (needs the `diffusers` package)."""
    import diffusers

    class_name, kwargs = diffusers_config(model.config, scale_factor)
    theirs = getattr(diffusers, class_name)(**kwargs)
    theirs.load_state_dict(to_diffusers_state_dict(model.state_dict(), model.config))
    p = next(model.parameters())
    return (theirs.to(p.device) if p.dtype == torch.float32 else theirs.to(p.device, p.dtype)).eval()


def from_diffusers(model) -> tuple[Autoencoder, float]:
    """(ldmkit autoencoder, scale_factor) from a diffusers AutoencoderKL / VQModel, in eval mode."""
    cfg, scale = config_from_diffusers(type(model).__name__, dict(model.config))
    ours = build_autoencoder(cfg)
    ours.load_state_dict(from_diffusers_state_dict(model.state_dict(), cfg))
    p = next(model.parameters())
    return ours.to(p.device, p.dtype).eval(), scale
