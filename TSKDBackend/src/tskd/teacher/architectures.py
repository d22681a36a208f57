"""SAM architectures by name: a builder registry in the manner of segment-anything's ``build_sam.py``.

Each registry entry is a small function that passes only the numbers that differ from SAM's
ViT-B/L/H layout to one private builder, so the hyper-parameters live in one place:

=========  =====  =====  =====  ===================  ==========================================
name       width  depth  heads  global attention     use
=========  =====  =====  =====  ===================  ==========================================
``vit_b``    768     12     12  2, 5, 8, 11          SAM ViT-B (``sam_vit_b_01ec64.pth``)
``vit_l``   1024     24     16  5, 11, 17, 23        SAM ViT-L (``sam_vit_l_0b3195.pth``)
``vit_h``   1280     32     16  7, 15, 23, 31        SAM ViT-H (``sam_vit_h_4b8939.pth``)
``medsam``   768     12     12  2, 5, 8, 11          MedSAM (``medsam_vit_b.pth``), ViT-B layout
``litemedsam``  TinyViT (64-320 wide, 12 blocks)      LiteMedSAM (``lite_medsam.pth``), 256 px
``tiny``      32      2      2  1                    random weights: tests, ``base: none`` smoke runs
``small``    128      4      4  1, 3                 random weights: ``base: none`` runs on a CPU
=========  =====  =====  =====  ===================  ==========================================

The foundation sizes share SAM's prompt encoder and mask decoder (256 wide, 2 two-way layers,
8 heads); ``tiny`` and ``small`` shrink those too so they train in seconds at 64-128 px.

``litemedsam`` is MedSAM distilled for laptops: SAM's prompt encoder and mask decoder on a TinyViT
image encoder (:mod:`tskd.teacher.tiny_vit`) whose embedding grid is a quarter of the input (64 x 64
at its native 256 px) instead of a sixteenth; it expects each image scaled to ``[0, 1]`` by its own
minimum and maximum (``input_scaling = "minmax"``). Its ViT numbers below are unused.

:func:`sam_config` turns an architecture into a :class:`transformers.SamConfig` for a given input
size (a multiple of 16; SAM's native size is 1024, 256 and 512 are the usual fine-tuning sizes)
and number of classes ``K`` (the mask decoder gets ``K`` multimask outputs, one per class).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch and transformers are imported where a model is built, so that the
    import torch  # registry (and the configs that check names against it) imports neither
    from transformers import SamConfig, SamModel

    from tskd.teacher.tiny_vit import TinyViTSpec

__all__ = [
    "SamArchitecture",
    "ARCHITECTURES",
    "FOUNDATION_ARCHITECTURES",
    "get_architecture",
    "available_architectures",
    "check_input_size",
    "sam_config",
    "build_sam",
]

PATCH_SIZE = 16


@dataclasses.dataclass(frozen=True)
class SamArchitecture:
    """The numbers that define one SAM size.

    Args:
        name: registry name.
        encoder_width: ViT embedding width.
        encoder_depth: number of ViT blocks.
        encoder_heads: attention heads per ViT block.
        global_attn_indexes: blocks with global (not windowed) attention.
        window_size: side of the attention windows of the other blocks, in patches.
        embedding_dim: channels of the image embedding (neck output) = prompt/decoder width.
        decoder_mlp_dim: hidden size of the two-way transformer's MLPs.
        decoder_heads: attention heads of the two-way transformer.
        decoder_depth: number of two-way attention blocks.
        iou_head_hidden_dim: hidden size of the IoU prediction head.
        mask_input_channels: channels of the prompt encoder's mask down-scaling.
        native_input_size: input size of the published weights (position tables are sized for it).
        foundation: whether published foundation weights exist for this size.
        encoder: ``"vit"`` (SAM's ViT, the numbers above) or ``"tinyvit"`` (LiteMedSAM's encoder,
            :mod:`tskd.teacher.tiny_vit`; the ViT numbers are unused).
        input_scaling: what the encoder expects of the normalised image: ``"none"`` (taken as is)
            or ``"minmax"`` (each image scaled to ``[0, 1]`` by its own minimum and maximum).
    """

    name: str
    encoder_width: int
    encoder_depth: int
    encoder_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    embedding_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_heads: int = 8
    decoder_depth: int = 2
    iou_head_hidden_dim: int = 256
    mask_input_channels: int = 16
    native_input_size: int = 1024
    foundation: bool = True
    encoder: str = "vit"
    input_scaling: str = "none"

    @property
    def head_dim(self) -> int:
        return self.encoder_width // self.encoder_heads

    @property
    def patch_size(self) -> int:
        """Input pixels per image-embedding cell along each side (16 for the ViTs, 4 for TinyViT)."""
        return 4 if self.encoder == "tinyvit" else PATCH_SIZE

    def tiny_vit_spec(self) -> "TinyViTSpec":
        """The TinyViT numbers (``encoder == "tinyvit"`` only)."""
        if self.encoder != "tinyvit":
            raise ValueError(f"SAM architecture {self.name!r} has a ViT image encoder, not a TinyViT")
        from tskd.teacher.tiny_vit import LITEMEDSAM_SPEC

        return LITEMEDSAM_SPEC


def _architecture(
    name: str,
    encoder_width: int,
    encoder_depth: int,
    encoder_heads: int,
    global_attn_indexes: tuple[int, ...],
    **differs: int | bool,
) -> SamArchitecture:
    return SamArchitecture(
        name=name,
        encoder_width=encoder_width,
        encoder_depth=encoder_depth,
        encoder_heads=encoder_heads,
        global_attn_indexes=tuple(global_attn_indexes),
        **differs,  # type: ignore[arg-type]
    )


def _vit_b() -> SamArchitecture:
    return _architecture("vit_b", 768, 12, 12, (2, 5, 8, 11))


def _vit_l() -> SamArchitecture:
    return _architecture("vit_l", 1024, 24, 16, (5, 11, 17, 23))


def _vit_h() -> SamArchitecture:
    return _architecture("vit_h", 1280, 32, 16, (7, 15, 23, 31))


def _medsam() -> SamArchitecture:
    return dataclasses.replace(_vit_b(), name="medsam")


def _litemedsam() -> SamArchitecture:
    # the ViT numbers describe nothing here (encoder "tinyvit"); the decoder is SAM's
    return _architecture(
        "litemedsam", 64, 12, 2, (), native_input_size=256, encoder="tinyvit", input_scaling="minmax",
    )


def _tiny() -> SamArchitecture:
    return _architecture(
        "tiny", 32, 2, 2, (1,), window_size=4, embedding_dim=32, decoder_mlp_dim=64, decoder_heads=2,
        iou_head_hidden_dim=32, mask_input_channels=4, native_input_size=128, foundation=False,
    )


def _small() -> SamArchitecture:
    return _architecture(
        "small", 128, 4, 4, (1, 3), window_size=8, embedding_dim=64, decoder_mlp_dim=256, decoder_heads=4,
        iou_head_hidden_dim=64, mask_input_channels=8, native_input_size=128, foundation=False,
    )


ARCHITECTURES: dict[str, Callable[[], SamArchitecture]] = {
    "vit_b": _vit_b,
    "vit_l": _vit_l,
    "vit_h": _vit_h,
    "medsam": _medsam,
    "litemedsam": _litemedsam,
    "tiny": _tiny,
    "small": _small,
}

FOUNDATION_ARCHITECTURES = ("vit_b", "vit_l", "vit_h", "medsam", "litemedsam")


def available_architectures() -> list[str]:
    """Registry names, foundation sizes first."""
    return list(ARCHITECTURES)


def get_architecture(name: str) -> SamArchitecture:
    """The architecture registered under ``name``.

    Raises:
        ValueError: for an unknown name (the message lists the known ones).
    """
    try:
        return ARCHITECTURES[name]()
    except KeyError:
        raise ValueError(
            f"unknown SAM architecture {name!r}; known: {', '.join(available_architectures())}"
        ) from None


def check_input_size(input_size: int) -> int:
    """Return ``input_size`` if SAM can take it (a multiple of 16, at least 32), else raise ValueError."""
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ValueError(f"input_size must be an integer, got {input_size!r}")
    if input_size < 2 * PATCH_SIZE or input_size % PATCH_SIZE:
        raise ValueError(
            f"input_size must be a multiple of {PATCH_SIZE} and at least {2 * PATCH_SIZE} "
            f"(e.g. 256, 512 or SAM's native 1024), got {input_size}"
        )
    return input_size


def sam_config(arch: SamArchitecture | str, *, input_size: int = 1024, num_classes: int = 2) -> SamConfig:
    """A :class:`~transformers.SamConfig` for ``arch`` at ``input_size`` with ``num_classes`` outputs.

    Args:
        arch: an architecture or its registry name.
        input_size: side ``S`` of the square input image in pixels (multiple of 16).
        num_classes: ``K``, number of classes including background (>= 2); the decoder gets
            ``K`` multimask outputs (``K + 1`` mask tokens).
    """
    if isinstance(arch, str):
        arch = get_architecture(arch)
    check_input_size(input_size)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2 (background + at least one class), got {num_classes!r}")
    if arch.encoder == "tinyvit":  # a one-block placeholder ViT, replaced by the TinyViT in build_sam
        encoder = dict(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, global_attn_indexes=[0],
                       window_size=0, mlp_dim=8)
    else:
        encoder = dict(
            hidden_size=arch.encoder_width,
            num_hidden_layers=arch.encoder_depth,
            num_attention_heads=arch.encoder_heads,
            global_attn_indexes=list(arch.global_attn_indexes),
            window_size=arch.window_size,
        )
    vision = dict(
        **encoder,
        output_channels=arch.embedding_dim,
        num_pos_feats=arch.embedding_dim // 2,  # must be half the prompt encoder's width
        image_size=input_size,
        patch_size=arch.patch_size,
    )
    prompt = dict(
        hidden_size=arch.embedding_dim,
        image_size=input_size,
        patch_size=arch.patch_size,
        mask_input_channels=arch.mask_input_channels,
    )
    decoder = dict(
        hidden_size=arch.embedding_dim,
        mlp_dim=arch.decoder_mlp_dim,
        num_hidden_layers=arch.decoder_depth,
        num_attention_heads=arch.decoder_heads,
        num_multimask_outputs=num_classes,
        iou_head_hidden_dim=arch.iou_head_hidden_dim,
        # segment-anything's two-way blocks use torch's LayerNorm default (1e-5), transformers' 1e-6: the
        # published weights were trained with 1e-5 (masks differed by 2e-4 relative with 1e-6; the
        # LiteMedSAM parity test measures it)
        layer_norm_eps=1e-5,
    )
    from transformers import SamConfig

    return SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)


def build_sam(
    arch: SamArchitecture | str,
    *,
    input_size: int = 1024,
    num_classes: int = 2,
    device: torch.device | str | None = None,
) -> SamModel:
    """A randomly initialised :class:`~transformers.SamModel` of ``arch``.

    Args:
        arch: an architecture or its registry name.
        input_size: side ``S`` of the square input image (multiple of 16).
        num_classes: ``K`` classes including background.
        device: where to create the weights; ``"meta"`` builds shapes only (no memory, no time),
            for loading weights with ``assign=True`` or counting parameters.
    """
    import torch
    from transformers import SamModel

    if isinstance(arch, str):
        arch = get_architecture(arch)
    config = sam_config(arch, input_size=input_size, num_classes=num_classes)
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = SamModel(config)
        if arch.encoder == "tinyvit":
            from tskd.teacher.tiny_vit import TinyViTEncoder

            model.vision_encoder = TinyViTEncoder(arch.tiny_vit_spec())
    if not model.shared_image_embedding.positional_embedding.is_meta:
        _init_for_training(model, vit=arch.encoder == "vit")
    return model


def _init_for_training(model: SamModel, *, vit: bool = True) -> None:
    """Re-initialise what ``transformers`` initialises for loading only, so a model can train from scratch.

    ``transformers`` draws the ViT's weights with std 1e-10 (they are always overwritten by
    pretrained ones) and the prompt encoder's Fourier matrix with std ``width / 2``. Here the ViT's
    linear and convolution weights get a truncated normal (std 0.02, zero bias) as in ViT training,
    and the Fourier matrix a standard normal as in segment-anything.
    """
    import torch
    from torch import nn

    with torch.no_grad():
        for module in model.vision_encoder.modules() if vit else ():  # a TinyViT initialises itself
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                nn.init.trunc_normal_(module.weight, std=0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        model.shared_image_embedding.positional_embedding.normal_(0.0, 1.0)
