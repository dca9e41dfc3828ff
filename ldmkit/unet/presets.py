"""Named UNet configs. The paper-scale ones are checked against the CompVis YAML files named below.

- tiny / tiny-crossattn / tiny-legacy: test models of a few hundred thousand parameters.
- emoji-small: the CPU model for the embedded 64 px emoji data at latent 4x16x16, cross-attending
  to 384-wide text tokens (all-MiniLM-L6-v2's width); sized for a ~30-minute 2-core CPU run.
- cin256: the class-conditional ImageNet LDM on VQ-f8 latents 4x32x32 (latent-diffusion
  `models/ldm/cin256/config.yaml` = `configs/latent-diffusion/cin-ldm-vq-f8.yaml`).
- cin256-v2: the released class-conditional ImageNet LDM-4 on VQ-f4 latents 3x64x64
  (`configs/latent-diffusion/cin256-v2.yaml`).
- txt2img: the LAION text-to-image LDM-KL-8-G, latents 4x32x32 (`txt2img-1p4B-eval.yaml`).
- sd-v1: Stable Diffusion v1, latents 4x64x64 (stable-diffusion `v1-inference.yaml`).
CompVis' class-conditional models read the class through cross-attention to a ClassEmbedder's
token (context_dim 512), not through `num_classes`.
"""

from __future__ import annotations

from ldmkit.unet.config import UNetConfig

UNET_PRESETS: dict[str, UNetConfig] = {
    "tiny": UNetConfig(
        in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
        attention_resolutions=(2,), num_heads=2, sample_size=8,
    ),
    "tiny-crossattn": UNetConfig(
        in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
        attention_resolutions=(1, 2), num_head_channels=16, use_spatial_transformer=True,
        context_dim=32, sample_size=8,
    ),
    "tiny-legacy": UNetConfig(
        in_channels=4, out_channels=4, model_channels=32, channel_mult=(1, 2), num_res_blocks=1,
        attention_resolutions=(2,), num_heads=4, use_scale_shift_norm=True, resblock_updown=True,
        num_classes=10, sample_size=8,
    ),
    "emoji-small": UNetConfig(
        in_channels=4, out_channels=4, model_channels=64, channel_mult=(1, 2, 4), num_res_blocks=2,
        attention_resolutions=(2, 4), num_head_channels=32, use_spatial_transformer=True,
        transformer_depth=1, context_dim=384, legacy=False, sample_size=16,
    ),
    "cin256": UNetConfig(
        in_channels=4, out_channels=4, model_channels=256, channel_mult=(1, 2, 4), num_res_blocks=2,
        attention_resolutions=(4, 2, 1), num_head_channels=32, use_spatial_transformer=True,
        transformer_depth=1, context_dim=512, sample_size=32,
    ),
    "cin256-v2": UNetConfig(
        in_channels=3, out_channels=3, model_channels=192, channel_mult=(1, 2, 3, 5), num_res_blocks=2,
        attention_resolutions=(8, 4, 2), num_heads=1, use_spatial_transformer=True,
        transformer_depth=1, context_dim=512, sample_size=64,
    ),
    "txt2img": UNetConfig(
        in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
        attention_resolutions=(4, 2, 1), num_heads=8, use_spatial_transformer=True,
        transformer_depth=1, context_dim=1280, legacy=False, sample_size=32,
    ),
    "sd-v1": UNetConfig(
        in_channels=4, out_channels=4, model_channels=320, channel_mult=(1, 2, 4, 4), num_res_blocks=2,
        attention_resolutions=(4, 2, 1), num_heads=8, use_spatial_transformer=True,
        transformer_depth=1, context_dim=768, legacy=False, sample_size=64,
    ),
}
