"""The denoising UNet's config: widths, depths, where attention sits and how conditioning enters.

The keys and their meaning follow CompVis' `openaimodel.UNetModel` so that a CompVis `unet_config`
maps key for key (minus `image_size`, `dims`, `use_fp16`, `n_embed` and `use_new_attention_order`,
which ldmkit does not support). `-1` means "unused" for the head settings, as in CompVis.
"""

from __future__ import annotations

from dataclasses import dataclass

from ldmkit.errors import ConfigError

GROUPS = 32  # GroupNorm groups in every UNet norm layer


@dataclass(frozen=True)
class UNetConfig:
    in_channels: int = 4  # latent channels + channels of maps concatenated to x_t (`concat`)
    out_channels: int = 4
    model_channels: int = 64  # width of level 0; the timestep embedding has 4x this
    channel_mult: tuple[int, ...] = (1, 2, 4)  # one entry per level; spatial factor 2 ** (len - 1)
    num_res_blocks: int = 2  # ResBlocks per level on the way down (one more on the way up)
    attention_resolutions: tuple[int, ...] = (2, 4)  # downsampling factors 1, 2, 4, ... with attention (powers of
    # two; ldmkit's training configs refuse those past the deepest level, which CompVis ignores)
    dropout: float = 0.0
    conv_resample: bool = True  # learned 3x3 convs around the resampling (else avg-pool / nearest only)
    num_heads: int = -1  # heads per attention layer ...
    num_head_channels: int = -1  # ... or channels per head (wins when both are set, as in CompVis)
    num_heads_upsample: int = -1  # legacy AttentionBlock heads in the output blocks (-1: num_heads)
    legacy: bool = True  # CompVis' head-count rule (see `attention_heads`)
    use_scale_shift_norm: bool = False  # ResBlocks apply the embedding as GN(h) * (1 + scale) + shift
    resblock_updown: bool = False  # resample inside ResBlocks instead of Downsample / Upsample layers
    use_spatial_transformer: bool = False  # SpatialTransformer (cross-attention) instead of AttentionBlock
    transformer_depth: int = 1
    context_dim: int | None = None  # width of the context tokens; required by the SpatialTransformer
    use_linear_in_transformer: bool = False  # SD2-style Linear proj_in / proj_out instead of 1x1 convs
    num_classes: int | None = None  # class embedding added to the timestep embedding (`y`)
    use_checkpoint: bool = False  # gradient checkpointing of every block while gradients are on
    sample_size: int = 32  # latent side it is meant for; informational: any multiple of size_multiple runs

    def __post_init__(self) -> None:
        def fail(key: str, message: str) -> None:
            raise ConfigError(f"unet config key '{key}': {message}")

        object.__setattr__(self, "channel_mult", tuple(self.channel_mult))  # lists from Python callers
        # a set in CompVis: kept sorted so that equal configs compare equal
        object.__setattr__(self, "attention_resolutions", tuple(sorted(set(self.attention_resolutions))))
        for key in ("in_channels", "out_channels", "model_channels", "num_res_blocks", "transformer_depth",
                    "sample_size"):
            if getattr(self, key) < 1:
                fail(key, f"must be >= 1, got {getattr(self, key)}")
        if not self.channel_mult or any(m < 1 for m in self.channel_mult):
            fail("channel_mult", f"must be a non-empty list of positive multipliers, got {list(self.channel_mult)}")
        for i, m in enumerate(self.channel_mult):
            if (self.model_channels * m) % GROUPS:
                fail("channel_mult", f"level {i} has model_channels * channel_mult[{i}] = "
                                     f"{self.model_channels * m} channels, not divisible by {GROUPS} "
                                     f"(GroupNorm groups); use a model_channels that is a multiple of {GROUPS}")
        for a in self.attention_resolutions:  # (factors past the deepest level: check_attention_levels)
            if a < 1 or a & (a - 1):
                raise self.attention_error(a)
        if not 0.0 <= self.dropout < 1.0:
            fail("dropout", f"must be in [0, 1), got {self.dropout}")
        if self.num_heads == -1 and self.num_head_channels == -1:
            fail("num_heads", "set num_heads or num_head_channels (-1 means unused)")
        for key in ("num_heads", "num_head_channels", "num_heads_upsample"):
            value = getattr(self, key)
            if value != -1 and value < 1:
                fail(key, f"must be >= 1 or -1 (unused), got {value}")
        if self.use_spatial_transformer and self.context_dim is None:
            fail("context_dim", "the SpatialTransformer cross-attends to context tokens; set their width")
        if self.context_dim is not None and not self.use_spatial_transformer:
            fail("use_spatial_transformer", "context_dim is set, but only the SpatialTransformer reads "
                                            "context; set use_spatial_transformer: true or context_dim: null")
        if self.context_dim is not None and self.context_dim < 1:
            fail("context_dim", f"must be >= 1, got {self.context_dim}")
        if self.use_linear_in_transformer and not self.use_spatial_transformer:
            fail("use_linear_in_transformer", "only applies with use_spatial_transformer: true")
        if self.num_classes is not None and self.num_classes < 1:
            fail("num_classes", f"must be >= 1 or null, got {self.num_classes}")
        for ch in sorted({self.model_channels * m for m in self.channel_mult}):
            for upsample in (False, True):
                heads, head_dim = self.attention_heads(ch, upsample)
                key = "num_head_channels" if self.num_head_channels != -1 else (
                    "num_heads_upsample" if upsample and self.num_heads_upsample != -1 else "num_heads")
                if heads < 1 or head_dim < 1 or (not self.use_spatial_transformer and heads * head_dim != ch):
                    fail(key, f"gives {heads} heads of {head_dim} channels for a {ch}-channel attention "
                              f"layer; choose a value that divides {ch}")

    @property
    def levels(self) -> int:
        return len(self.channel_mult)

    @property
    def level_factors(self) -> list[int]:
        """The downsampling factors of the levels, 1, 2, 4, ...: what attention_resolutions may name."""
        return [2**i for i in range(self.levels)]

    def attention_error(self, factor: int) -> ConfigError:
        return ConfigError(f"unet config key 'attention_resolutions': {factor} is not the downsampling factor of a "
                           f"level; with {self.levels} levels choose from {self.level_factors}")

    def check_attention_levels(self) -> None:
        """Refuse attention_resolutions past the deepest level, which add no attention layer. Not in __post_init__:
        CompVis ignores them, and released CompVis configs (and the models converted from them) list some, e.g.
        [32, 16, 8] with three levels."""
        for factor in self.attention_resolutions:
            if factor not in self.level_factors:
                raise self.attention_error(factor)

    @property
    def size_multiple(self) -> int:
        """Height and width must be multiples of this (one factor 2 per downsampling)."""
        return 2 ** (self.levels - 1)

    @property
    def smallest_size(self) -> int:
        """The side one of height and width needs at least: at 1 x 1, its lowest level's GroupNorms have one
        value per group (an error) unless that level has at least 2 x GROUPS channels."""
        bottom_channels = self.model_channels * min(self.channel_mult[-2:])
        return self.size_multiple * (1 if bottom_channels >= 2 * GROUPS else 2)

    def held_values(self, height: int, width: int) -> int:
        """A lower bound on the values a forward pass holds at once for one latent of height x width: the
        skips its way down keeps for the way up (each level's ResBlock outputs and the map entering it)."""
        widths = [self.model_channels * m for m in self.channel_mult]
        return sum((self.num_res_blocks * c + widths[max(i - 1, 0)]) * (height >> i) * (width >> i)
                   for i, c in enumerate(widths))

    def attention_heads(self, channels: int, upsample: bool = False) -> tuple[int, int]:
        """(heads, channels per head) of the attention layer at `channels`, as CompVis computes them.

        `num_head_channels` (when set) fixes the head width, else `num_heads` fixes the count. The
        legacy AttentionBlock uses `num_heads_upsample` in the output blocks only when `legacy` is
        true; with `legacy` false it uses `channels // (channels // num_heads)` heads everywhere. The
        SpatialTransformer always uses `num_heads` (never `num_heads_upsample`); with `legacy` its
        head width is `channels // heads` even when `num_head_channels` is set.
        """
        if self.num_head_channels != -1:
            heads, head_dim = channels // self.num_head_channels, self.num_head_channels
        else:
            heads, head_dim = self.num_heads, channels // self.num_heads
        if self.use_spatial_transformer:
            return heads, (channels // heads if self.legacy and heads else head_dim)
        if self.num_head_channels == -1:
            if self.legacy:
                up_heads = self.num_heads if self.num_heads_upsample == -1 else self.num_heads_upsample
                heads = up_heads if upsample else self.num_heads
            else:
                heads = channels // head_dim if head_dim else 0
        return heads, (channels // heads if heads else 0)
