"""LoRA on SAM's image encoder (through ``peft``) and the teacher's trainable-parameter policy.

With foundation weights the teacher trains low-rank adapters on the image encoder's attention
projections (``qkv`` by default; ``proj`` and the MLP's ``lin1``/``lin2`` can be added) and the
whole mask decoder; the rest of the encoder and the prompt encoder stay frozen. For ViT-B, rank 4
on ``qkv`` adds about 0.15 M weights to an 86-89 M encoder (under 0.2 %).

Without foundation weights (``base: none``) there is nothing worth freezing: no LoRA, the whole
network trains (see :func:`set_trainable` for the few unused parts), and the model carries
``has_foundation_weights = False``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import peft
from torch import nn

from tskd.errors import ConfigError
from tskd.teacher.model import SamSegmenter

if TYPE_CHECKING:
    from tskd.teacher.config import LoraConfig

__all__ = ["apply_lora", "set_trainable", "lora_parameter_names", "trainable_parameter_report"]

logger = logging.getLogger(__name__)


def apply_lora(model: SamSegmenter, lora: "LoraConfig") -> SamSegmenter:
    """Add LoRA adapters to the image encoder in place and set which weights train.

    Args:
        model: a segmenter on foundation weights, without adapters yet.
        lora: rank, alpha, dropout and target module names (``teacher.lora``).

    Returns:
        ``model`` itself: adapters in ``model.sam.vision_encoder``, ``model.lora`` set.

    Raises:
        ValueError: the model has no foundation weights or already has adapters.
        ConfigError: no encoder module matches ``lora.targets``.
    """
    if not model.has_foundation_weights:
        raise ValueError("LoRA is for foundation weights; a model built with base 'none' trains all its weights")
    if model.lora is not None:
        raise ValueError("the model already has LoRA adapters")
    config = peft.LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.targets),
        bias="none",
    )
    try:
        peft.inject_adapter_in_model(config, model.sam.vision_encoder)
    except ValueError as exc:
        raise ConfigError(
            f"teacher.lora.targets {list(lora.targets)} match no module of the SAM image encoder "
            "(SAM's ViT: attention 'qkv' and 'proj', MLP 'lin1' and 'lin2'; LiteMedSAM's TinyViT: attention "
            "'qkv' and 'proj', MLP 'fc1' and 'fc2'): " + str(exc).split("\n")[0]
        ) from exc
    model.lora = lora
    set_trainable(model)
    report = trainable_parameter_report(model)
    logger.info(
        "LoRA rank %d on %s: %d trainable weights in the encoder (%.3f%% of it), %d in total",
        lora.rank, ", ".join(lora.targets), report["encoder_trainable"], report["encoder_trainable_percent"],
        report["trainable"],
    )
    return model


def lora_parameter_names(model: nn.Module) -> list[str]:
    """Names of the LoRA adapter weights in ``model.state_dict()``."""
    return [name for name in model.state_dict() if ".lora_A." in name or ".lora_B." in name]


# Parts SamSegmenter never uses: the IoU head and the single-mask head (multimask output drops it).
_UNUSED = ("sam.mask_decoder.iou_prediction_head.", "sam.mask_decoder.output_hypernetworks_mlps.0.")


def _trains(name: str, foundation: bool) -> bool:
    if name.startswith(_UNUSED):
        return False
    if foundation:  # LoRA adapters (when there are any) and the mask decoder
        return ".lora_A." in name or ".lora_B." in name or name.startswith("sam.mask_decoder.")
    if name.startswith("sam.prompt_encoder."):
        return name.startswith("sam.prompt_encoder.no_mask_embed.")
    # the random Fourier matrix is a fixed buffer in segment-anything
    return name != "sam.shared_image_embedding.positional_embedding"


def set_trainable(model: SamSegmenter) -> None:
    """Apply the teacher's policy of which weights train.

    With foundation weights: the LoRA adapters (none when the encoder is frozen) and the mask
    decoder. Without (``base: none``): everything except the
    prompt encoder (only its "no mask" embedding trains) and the fixed Fourier matrix. In both
    cases the decoder's IoU head and single-mask head stay frozen because the segmenter never uses
    them, so every trainable weight receives a gradient at every step (DDP needs no
    ``find_unused_parameters``).
    """
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(_trains(name, model.has_foundation_weights))


def trainable_parameter_report(model: SamSegmenter) -> dict[str, float]:
    """Parameter counts for logs and reports.

    Returns:
        ``trainable`` and ``total`` (whole model), ``encoder_total`` and ``encoder_trainable``
        (image encoder, adapters included), ``encoder_trainable_percent`` (100 x trainable /
        total in the encoder) and ``has_foundation_weights`` (1.0 or 0.0).
    """
    encoder_ids = {id(p) for p in model.sam.vision_encoder.parameters()}
    parameters = {id(p): p for p in model.parameters()}.values()
    total = sum(p.numel() for p in parameters)
    trainable = sum(p.numel() for p in parameters if p.requires_grad)
    encoder = [p for p in parameters if id(p) in encoder_ids]
    encoder_total = sum(p.numel() for p in encoder)
    encoder_trainable = sum(p.numel() for p in encoder if p.requires_grad)
    return {
        "trainable": trainable,
        "total": total,
        "encoder_total": encoder_total,
        "encoder_trainable": encoder_trainable,
        "encoder_trainable_percent": 100.0 * encoder_trainable / max(encoder_total, 1),
        "has_foundation_weights": float(model.has_foundation_weights),
    }
