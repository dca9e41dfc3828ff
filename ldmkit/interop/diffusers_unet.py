"""ldmkit UNet <-> diffusers `UNet2DConditionModel` / `UNet2DModel`: configs and state dicts.

Which diffusers class: a UNet with SpatialTransformers maps to `UNet2DConditionModel` (CrossAttn
blocks at the attention levels); one with legacy AttentionBlocks maps to `UNet2DModel` (Attn
blocks, whose `Attention` layers carry a GroupNorm). The time embedding is diffusers' `Timesteps`
with flip_sin_to_cos=True, freq_shift=0 (cos first, divisor half), `num_classes` is
`num_class_embeds`, scale-shift norm is resnet_time_scale_shift="scale_shift", and
`resblock_updown` is downsample_type/upsample_type "resnet" (UNet2DModel only).

Key correspondence (ldmkit keeps CompVis' names):
  time_embed.0 / .2 <-> time_embedding.linear_1 / linear_2; label_emb <-> class_embedding
  input_blocks.0.0 <-> conv_in; out.0 / out.2 <-> conv_norm_out / conv_out
  input_blocks.{k}.0 / .1 <-> down_blocks.{level}.resnets.{j} / attentions.{j}, then the level's
    Downsample input_blocks.{k}.0.op <-> down_blocks.{level}.downsamplers.0.conv
  middle_block.0 / .1 / .2 <-> mid_block.resnets.0 / attentions.0 / resnets.1
  output_blocks.{k}.0 / .1 <-> up_blocks.{i}.resnets.{j} / attentions.{j}, the Upsample
    output_blocks.{k}.{1|2}.conv <-> up_blocks.{i}.upsamplers.0.conv
  ResBlock in_layers.0 / in_layers.2 / emb_layers.1 / out_layers.0 / out_layers.3 / skip_connection
    <-> ResnetBlock2D norm1 / conv1 / time_emb_proj / norm2 / conv2 / conv_shortcut
  SpatialTransformer <-> Transformer2DModel: identical names inside
  AttentionBlock norm / qkv / proj_out <-> Attention group_norm / to_q, to_k, to_v / to_out.0: the
    1x1 conv weights become matrices and qkv's per-head [q, k, v] channel groups are regrouped.
What diffusers cannot express raises an LdmkitError naming the key: conv_resample false, a
SpatialTransformer whose heads * head width differs from its channels, resblock_updown with
SpatialTransformers, and legacy attention whose head width differs between layers.
"""

from __future__ import annotations

from functools import partial

import torch

from ldmkit.errors import CheckpointError, ConfigError
from ldmkit.unet.config import GROUPS, UNetConfig
from ldmkit.unet.model import UNet

RESNET = {"in_layers.0": "norm1", "in_layers.2": "conv1", "emb_layers.1": "time_emb_proj",
          "out_layers.0": "norm2", "out_layers.3": "conv2", "skip_connection": "conv_shortcut"}
FIXED = {"flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu", "norm_num_groups": GROUPS, "norm_eps": 1e-5,
         "center_input_sample": False, "time_embedding_type": "positional", "downsample_padding": 1}
FIXED_CONDITION = {"class_embed_type": None, "addition_embed_type": None, "encoder_hid_dim": None,
                   "time_embedding_dim": None, "time_cond_proj_dim": None, "conv_in_kernel": 3, "conv_out_kernel": 3,
                   "only_cross_attention": False, "dual_cross_attention": False, "mid_block_scale_factor": 1,
                   "resnet_out_scale_factor": 1.0, "resnet_skip_time_act": False, "attention_type": "default",
                   "class_embeddings_concat": False, "mid_block_type": "UNetMidBlock2DCrossAttn"}


def _unsupported(key: str, message: str) -> ConfigError:
    return ConfigError(f"unet config key '{key}': diffusers cannot express this model: {message}")


def _legacy_head_dim(cfg: UNetConfig) -> int:
    widths = {cfg.model_channels * cfg.channel_mult[-1]: [False]}  # middle block
    for i, mult in enumerate(cfg.channel_mult):
        if 2**i in cfg.attention_resolutions:
            widths.setdefault(cfg.model_channels * mult, []).extend([False, True])
    dims = {cfg.attention_heads(ch, up)[1] for ch, ups in widths.items() for up in ups}
    if len(dims) != 1:
        raise _unsupported("num_heads", f"UNet2DModel has one attention_head_dim, this config gives head "
                                        f"widths {sorted(dims)}; use num_head_channels")
    return dims.pop()


def diffusers_config(cfg: UNetConfig) -> tuple[str, dict]:
    """(diffusers class name, its config kwargs) for the model equivalent to `cfg`."""
    if not cfg.conv_resample:
        raise _unsupported("conv_resample", "its Down/Upsample layers always have convs")
    levels = range(cfg.levels)
    attn = [2**i in cfg.attention_resolutions for i in levels]
    common = dict(FIXED, sample_size=cfg.sample_size, in_channels=cfg.in_channels, out_channels=cfg.out_channels,
                  block_out_channels=tuple(cfg.model_channels * m for m in cfg.channel_mult),
                  layers_per_block=cfg.num_res_blocks, dropout=cfg.dropout, num_class_embeds=cfg.num_classes,
                  resnet_time_scale_shift="scale_shift" if cfg.use_scale_shift_norm else "default")
    if cfg.use_spatial_transformer:
        if cfg.resblock_updown:
            raise _unsupported("resblock_updown", "its cross-attention blocks resample with convs")
        heads = []
        for level, mult in enumerate(cfg.channel_mult):
            ch = cfg.model_channels * mult
            n, d = cfg.attention_heads(ch)
            if n * d != ch and (attn[level] or level == cfg.levels - 1):
                raise _unsupported("num_head_channels", f"{n} heads x {d} channels != {ch} channels")
            heads.append(n)
        down = tuple("CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn)
        up = tuple("CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn))
        # diffusers' `attention_head_dim` of UNet2DConditionModel holds head counts (its naming issue #2011)
        return "UNet2DConditionModel", dict(
            common, **FIXED_CONDITION, down_block_types=down, up_block_types=up, attention_head_dim=tuple(heads),
            cross_attention_dim=cfg.context_dim, transformer_layers_per_block=cfg.transformer_depth,
            use_linear_projection=cfg.use_linear_in_transformer)
    plain_down = "ResnetDownsampleBlock2D" if cfg.resblock_updown else "DownBlock2D"
    plain_up = "ResnetUpsampleBlock2D" if cfg.resblock_updown else "UpBlock2D"
    down = tuple("AttnDownBlock2D" if a else plain_down for a in attn)
    up = tuple("AttnUpBlock2D" if a else plain_up for a in reversed(attn))
    return "UNet2DModel", dict(
        common, down_block_types=down, up_block_types=up, mid_block_type="UNetMidBlock2D",
        attention_head_dim=_legacy_head_dim(cfg), attn_norm_num_groups=GROUPS, add_attention=True,
        downsample_type="resnet" if cfg.resblock_updown else "conv",
        upsample_type="resnet" if cfg.resblock_updown else "conv")


def _equal(given, expected) -> bool:
    """Config values equal up to list/tuple and one value standing for all levels."""
    if isinstance(expected, tuple):
        given = tuple(given) if isinstance(given, (list, tuple)) else (given,) * len(expected)
    return given == expected


def config_from_diffusers(class_name: str, config: dict) -> UNetConfig:
    """The UNetConfig of a diffusers UNet2DConditionModel / UNet2DModel config (e.g. `model.config`).

    Raises ConfigError for a diffusers option ldmkit cannot express (the config is converted back
    and every key compared).
    """
    if class_name not in ("UNet2DConditionModel", "UNet2DModel"):
        raise ConfigError(f"diffusers class {class_name!r} is not a UNet ldmkit reads; "
                          "use UNet2DConditionModel or UNet2DModel")

    def single(key: str, default=None):
        value = config.get(key, default)
        if isinstance(value, (list, tuple)):
            if len(set(value)) != 1:
                raise ConfigError(f"diffusers config key '{key}' = {value!r}: ldmkit needs one value for all levels")
            value = value[0]
        return value

    widths = tuple(config["block_out_channels"])
    mc = widths[0]
    shift = config.get("resnet_time_scale_shift", "default")
    kwargs = dict(in_channels=config["in_channels"], out_channels=config["out_channels"], model_channels=mc,
                  channel_mult=tuple(w // mc for w in widths), num_res_blocks=single("layers_per_block"),
                  attention_resolutions=tuple(2**i for i, name in enumerate(config["down_block_types"])
                                              if name.startswith(("Attn", "CrossAttn"))),
                  dropout=config.get("dropout", 0.0), use_scale_shift_norm=shift == "scale_shift",
                  num_classes=config.get("num_class_embeds"), sample_size=single("sample_size") or 32)
    if class_name == "UNet2DConditionModel":
        heads = config.get("attention_head_dim", 8)  # head counts, see diffusers_config
        heads = (heads,) * len(widths) if isinstance(heads, int) else tuple(heads)
        used = {(w, h) for w, h, name in zip(widths, heads, config["down_block_types"]) if "Attn" in name}
        used.add((widths[-1], heads[-1]))  # the middle block
        if len({h for _, h in used}) == 1:
            head_setting = {"num_heads": heads[-1]}
        elif len({w // h for w, h in used}) == 1 and all(w % h == 0 for w, h in used):
            head_setting = {"num_head_channels": widths[-1] // heads[-1]}
        else:
            raise ConfigError(f"diffusers attention_head_dim {heads}: ldmkit needs one head count or one head width")
        cfg = UNetConfig(**kwargs, **head_setting, legacy=False, use_spatial_transformer=True,
                         context_dim=single("cross_attention_dim", 1280),
                         transformer_depth=single("transformer_layers_per_block", 1),
                         use_linear_in_transformer=config.get("use_linear_projection", False))
    else:
        cfg = UNetConfig(**kwargs, num_head_channels=config.get("attention_head_dim", 8) or widths[-1],
                         resblock_updown=config.get("downsample_type", "conv") == "resnet")
    _, expected = diffusers_config(cfg)
    for key, value in expected.items():
        if key in config and key not in ("attention_head_dim", "sample_size") and not _equal(config[key], value):
            raise ConfigError(f"diffusers config key '{key}' = {config[key]!r} has no ldmkit equivalent "
                              f"(ldmkit's nearest model has {value!r})")
    return cfg


# ---- state dicts -------------------------------------------------------------------------------

def _same(sub: dict, forward: bool) -> dict:
    return dict(sub)


def _resnet(sub: dict, forward: bool) -> dict:
    names = RESNET if forward else {v: k for k, v in RESNET.items()}
    out = {}
    for key, value in sub.items():
        module, _, param = key.rpartition(".")
        if module not in names:
            raise CheckpointError(f"unexpected ResBlock key {key!r}")
        out[f"{names[module]}.{param}"] = value
    return out


def _legacy_attention(sub: dict, forward: bool, heads: int) -> dict:
    norm = ("norm", "group_norm") if forward else ("group_norm", "norm")
    out = {f"{norm[1]}.{p}": sub[f"{norm[0]}.{p}"] for p in ("weight", "bias")}
    if forward:
        c = sub["proj_out.weight"].shape[0]
        w = sub["qkv.weight"].reshape(heads, 3, c // heads, c)  # per head [q | k | v]
        b = sub["qkv.bias"].reshape(heads, 3, c // heads)
        for i, name in enumerate(("to_q", "to_k", "to_v")):
            out[f"{name}.weight"] = w[:, i].reshape(c, c)
            out[f"{name}.bias"] = b[:, i].reshape(c)
        out["to_out.0.weight"] = sub["proj_out.weight"][:, :, 0]
        out["to_out.0.bias"] = sub["proj_out.bias"]
        return out
    c = sub["to_out.0.weight"].shape[0]
    names = ("to_q", "to_k", "to_v")
    out["qkv.weight"] = torch.stack([sub[f"{n}.weight"].reshape(heads, c // heads, c) for n in names],
                                    dim=1).reshape(3 * c, c, 1)  # per head [q | k | v]
    out["qkv.bias"] = torch.stack([sub[f"{n}.bias"].reshape(heads, c // heads) for n in names], dim=1).reshape(3 * c)
    out["proj_out.weight"] = sub["to_out.0.weight"][:, :, None]
    out["proj_out.bias"] = sub["to_out.0.bias"]
    return out


def _module_pairs(cfg: UNetConfig) -> list[tuple[str, str, object]]:
    """(ldmkit prefix, diffusers prefix, converter) for every module with parameters."""
    diffusers_config(cfg)  # raises for what diffusers cannot express

    def attention(ch: int, upsample: bool):
        if cfg.use_spatial_transformer:
            return _same
        return partial(_legacy_attention, heads=cfg.attention_heads(ch, upsample)[0])

    pairs = [("time_embed.0", "time_embedding.linear_1", _same), ("time_embed.2", "time_embedding.linear_2", _same),
             ("input_blocks.0.0", "conv_in", _same), ("out.0", "conv_norm_out", _same), ("out.2", "conv_out", _same)]
    if cfg.num_classes is not None:
        pairs.append(("label_emb", "class_embedding", _same))
    k, last = 1, cfg.levels - 1
    for i, mult in enumerate(cfg.channel_mult):
        for j in range(cfg.num_res_blocks):
            pairs.append((f"input_blocks.{k}.0", f"down_blocks.{i}.resnets.{j}", _resnet))
            if 2**i in cfg.attention_resolutions:
                pairs.append((f"input_blocks.{k}.1", f"down_blocks.{i}.attentions.{j}",
                              attention(cfg.model_channels * mult, False)))
            k += 1
        if i != last:
            pairs.append((f"input_blocks.{k}.0", f"down_blocks.{i}.downsamplers.0", _resnet) if cfg.resblock_updown
                         else (f"input_blocks.{k}.0.op", f"down_blocks.{i}.downsamplers.0.conv", _same))
            k += 1
    deepest = cfg.model_channels * cfg.channel_mult[-1]
    pairs += [("middle_block.0", "mid_block.resnets.0", _resnet), ("middle_block.2", "mid_block.resnets.1", _resnet),
              ("middle_block.1", "mid_block.attentions.0", attention(deepest, False))]
    k = 0
    for i, level in enumerate(reversed(range(cfg.levels))):
        has_attention = 2**level in cfg.attention_resolutions
        for j in range(cfg.num_res_blocks + 1):
            pairs.append((f"output_blocks.{k}.0", f"up_blocks.{i}.resnets.{j}", _resnet))
            if has_attention:
                pairs.append((f"output_blocks.{k}.1", f"up_blocks.{i}.attentions.{j}",
                              attention(cfg.model_channels * cfg.channel_mult[level], True)))
            if level and j == cfg.num_res_blocks:
                at = 2 if has_attention else 1
                pairs.append((f"output_blocks.{k}.{at}", f"up_blocks.{i}.upsamplers.0", _resnet) if cfg.resblock_updown
                             else (f"output_blocks.{k}.{at}.conv", f"up_blocks.{i}.upsamplers.0.conv", _same))
            k += 1
    return pairs


def _check_ldmkit_keys(keys, cfg: UNetConfig) -> None:
    with torch.device("meta"):
        expected = set(UNet(cfg).state_dict())
    missing, unexpected = sorted(expected - set(keys)), sorted(set(keys) - expected)
    if missing or unexpected:
        raise CheckpointError(f"the UNet state dict does not fit this config: {len(missing)} keys missing "
                              f"(e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. {unexpected[:3]})")


def _convert(state_dict: dict, cfg: UNetConfig, forward: bool) -> dict:
    if forward:
        _check_ldmkit_keys(state_dict, cfg)
    remaining, out = dict(state_dict), {}
    for ours, theirs, convert in _module_pairs(cfg):
        src, dst = (ours, theirs) if forward else (theirs, ours)
        sub = {key[len(src) + 1:]: remaining.pop(key) for key in list(remaining) if key.startswith(src + ".")}
        try:
            converted = convert(sub, forward)
        except KeyError as err:
            raise CheckpointError(f"the diffusers state dict lacks '{src}.{err.args[0]}'") from err
        out.update({f"{dst}.{key}": value for key, value in converted.items()})
    if remaining:
        raise CheckpointError(f"{len(remaining)} diffusers state-dict keys do not belong to this UNet config, "
                              f"e.g. {sorted(remaining)[:3]}")
    if not forward:
        _check_ldmkit_keys(out, cfg)
    return out


def to_diffusers_state_dict(state_dict: dict, cfg: UNetConfig) -> dict:
    """An ldmkit (= CompVis `model.diffusion_model.*` without the prefix) UNet state dict in diffusers' names."""
    return _convert(state_dict, cfg, forward=True)


def from_diffusers_state_dict(state_dict: dict, cfg: UNetConfig) -> dict:
    """A diffusers UNet state dict in ldmkit's names, for `UNet(cfg).load_state_dict`."""
    return _convert(state_dict, cfg, forward=False)


def to_diffusers(unet: UNet):
    """A diffusers model with `unet`'s weights (needs the `diffusers` package)."""
    import diffusers

    class_name, kwargs = diffusers_config(unet.config)
    model = getattr(diffusers, class_name)(**kwargs)
    model.load_state_dict(to_diffusers_state_dict(unet.state_dict(), unet.config))
    p = next(unet.parameters())
    return model.to(p.device) if p.dtype == torch.float32 else model.to(p.device, p.dtype)


def from_diffusers(model) -> UNet:
    """An ldmkit UNet with a diffusers UNet2DConditionModel's / UNet2DModel's weights."""
    cfg = config_from_diffusers(type(model).__name__, dict(model.config))
    unet = UNet(cfg)
    unet.load_state_dict(from_diffusers_state_dict(model.state_dict(), cfg))
    p = next(model.parameters())
    return unet.to(p.device, p.dtype)
