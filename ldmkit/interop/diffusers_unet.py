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
`links(cfg)` holds this correspondence tensor by tensor (tensor_files.Link); every ldmkit tensor is
one diffusers tensor renamed, or reshaped (1x1 conv <-> Linear), except a legacy AttentionBlock's qkv,
which is made of three (to_q, to_k, to_v). It converts state dicts both ways and lets a diffusers
folder load tensor by tensor (diffusers_models.py).
What diffusers cannot express raises an LdmkitError naming the key: conv_resample false, a
SpatialTransformer whose heads * head width differs from its channels, resblock_updown with
SpatialTransformers, and legacy attention whose head width differs between layers.
"""

from __future__ import annotations

from functools import partial

import torch

from ldmkit.errors import ConfigError
from ldmkit.interop.tensor_files import Link, link_sources, module_links
from ldmkit.state_dicts import converted_state_dict
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
# A converter takes the name of a tensor inside one module (e.g. "in_layers.0.weight") and returns its Link
# to the diffusers module's tensors; links() prefixes both sides with the modules' names.

def _same(param: str) -> Link:
    return Link(param, (param,))


def _resnet(param: str) -> Link:
    module, _, name = param.rpartition(".")
    return Link(param, (f"{RESNET[module]}.{name}",))


def _join_heads(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """to_q / to_k / to_v weights (c, c) or biases (c,) -> qkv's, per head [q | k | v]: (3c, c, 1) or (3c,)."""
    c = q.shape[0]
    joined = torch.stack([t.reshape(heads, c // heads, *t.shape[1:]) for t in (q, k, v)], dim=1)  # (heads, 3, ...)
    joined = joined.reshape(3 * c, *q.shape[1:])
    return joined[:, :, None] if q.dim() == 2 else joined  # qkv is a 1x1 conv1d


def _split_heads(qkv: torch.Tensor, i: int, heads: int) -> torch.Tensor:
    """The i-th of to_q / to_k / to_v (0, 1, 2) of qkv's weight (3c, c, 1) or bias (3c,); _join_heads undone."""
    c, rest = qkv.shape[0] // 3, qkv.shape[1:2]
    return qkv.reshape(heads, 3, c // heads, *rest)[:, i].reshape(c, *rest)


def _legacy_attention(param: str, heads: int) -> Link:
    """AttentionBlock norm / qkv / proj_out (1x1 conv1d) <-> Attention group_norm / to_q, to_k, to_v / to_out.0:
    qkv joins three diffusers tensors into one, the only ldmkit tensor that does."""
    module, _, name = param.rpartition(".")
    if module == "norm":
        return Link(param, (f"group_norm.{name}",))
    if module == "proj_out" and name == "weight":
        return Link(param, ("to_out.0.weight",), lambda w: w[:, :, None], (lambda w: w[:, :, 0],))  # conv1d <-> Linear
    if module == "proj_out":
        return Link(param, ("to_out.0.bias",))
    return Link(param, tuple(f"{n}.{name}" for n in ("to_q", "to_k", "to_v")), partial(_join_heads, heads=heads),
                tuple(partial(_split_heads, i=i, heads=heads) for i in range(3)))


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


def links(cfg: UNetConfig) -> list[Link]:
    """The Link of every tensor of `UNet(cfg)`'s state dict to diffusers' (see the module docstring)."""
    with torch.device("meta"):
        keys = list(UNet(cfg).state_dict())
    return module_links(keys, _module_pairs(cfg))


def to_diffusers_state_dict(state_dict: dict, cfg: UNetConfig) -> dict:
    """An ldmkit (= CompVis `model.diffusion_model.*` without the prefix) UNet state dict in diffusers' names."""
    return converted_state_dict(link_sources(links(cfg), to_ours=False), state_dict, "the ldmkit UNet state dict")


def from_diffusers_state_dict(state_dict: dict, cfg: UNetConfig) -> dict:
    """A diffusers UNet state dict in ldmkit's names, for `UNet(cfg).load_state_dict`."""
    return converted_state_dict(link_sources(links(cfg), to_ours=True), state_dict, "the diffusers UNet state dict")


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
