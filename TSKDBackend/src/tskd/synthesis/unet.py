"""The denoising network: a ``diffusers.UNet2DModel`` sized by :class:`DiffusionConfig`.

The network sees ``C`` channels and predicts ``C`` channels: ``C = 1`` (a grey image) in ``image``
mode, ``C = 1 + K`` (image plus one-hot label channels) in ``joint`` mode. Resolution levels,
widths and which levels carry self-attention come from the config.
"""

from __future__ import annotations

from diffusers import UNet2DModel

from tskd.synthesis.config import DiffusionConfig

__all__ = ["build_unet", "model_channels"]


def model_channels(mode: str, num_classes: int | None = None, image_channels: int = 1) -> int:
    """Channels the network sees and predicts.

    Args:
        mode: ``image`` or ``joint``.
        num_classes: ``K``, needed in ``joint`` mode.
        image_channels: channels of the image part (1; 3 only for RGB pretrained models in
            ``image`` mode).
    """
    if mode == "image":
        return image_channels
    if mode == "joint":
        if num_classes is None or num_classes < 2:
            raise ValueError(f"joint mode needs num_classes >= 2, got {num_classes}")
        if image_channels != 1:
            raise ValueError("joint mode works with grey images only (image_channels=1)")
        return 1 + num_classes
    raise ValueError(f"mode must be 'image' or 'joint', got {mode!r}")


def build_unet(config: DiffusionConfig, *, num_classes: int | None = None) -> UNet2DModel:
    """A freshly initialised denoising U-Net.

    Args:
        config: sizes (``image_size``, ``block_out_channels``, ``layers_per_block``,
            ``attention_levels``...) and ``mode``.
        num_classes: ``K`` (with background), required in ``joint`` mode.

    Returns:
        ``UNet2DModel`` mapping ``(B, C, S, S)`` noisy samples and ``(B,)`` timesteps to
        ``(B, C, S, S)`` predictions, ``S = config.image_size``.
    """
    channels = model_channels(config.mode, num_classes)
    down = tuple("AttnDownBlock2D" if attn else "DownBlock2D" for attn in config.attention_levels)
    up = tuple("AttnUpBlock2D" if attn else "UpBlock2D" for attn in reversed(config.attention_levels))
    return UNet2DModel(
        sample_size=config.image_size,
        in_channels=channels,
        out_channels=channels,
        block_out_channels=tuple(config.block_out_channels),
        layers_per_block=config.layers_per_block,
        down_block_types=down,
        up_block_types=up,
        attention_head_dim=config.attention_head_dim,
        norm_num_groups=config.norm_num_groups,
        # The mid block's attention follows the lowest level's choice.
        add_attention=bool(config.attention_levels[-1]),
    )
