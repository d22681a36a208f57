"""MAE pre-training of the ViT student's encoder (MONAI's ``MaskedAutoEncoderViT``) and its transfer.

:func:`build_mae` makes a 2D masked autoencoder whose encoder has the student's exact size;
:class:`MAETask` trains it on all task images (labelled or not) for the engine; and
:func:`transfer_mae_encoder` copies the encoder into a :class:`~tskd.student.vit.ViTStudent`,
mapping every key explicitly and failing with the unmatched names otherwise.

MONAI's ``forward(x)`` hides ``masking_ratio`` of the patch tokens (random per sample, drawn with
the global CPU generator), encodes the rest with a class token, and returns ``(pred, mask)``:
``pred`` ``(B, N, p*p*C)`` reconstructs every patch token and ``mask`` ``(B, N)`` is 1 for hidden
ones. The loss (MAE's) is the per-patch MSE on hidden patches only, against targets laid out as
the conv patch embedding orders tokens (row-major over the patch grid).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any, Mapping

import torch
from monai.networks.nets import MaskedAutoEncoderViT
from torch import nn

from tskd.engine.task import TrainingTask
from tskd.engine.validation import ValData, device_of, mean_over_loader, move_to
from tskd.errors import CheckpointError, DataError
from tskd.student.base import StudentWithProjector
from tskd.student.config import MAEConfig
from tskd.student.vit import VIT_SPECS, ViTSpec, ViTStudent, resize_position_embeddings

__all__ = ["build_mae", "patchify", "mae_loss", "MAETask", "transfer_mae_encoder"]

logger = logging.getLogger(__name__)

_DECODER_PREFIXES = ("decoder_", "mask_tokens")


def build_mae(
    student: str = "vit_tiny", *, input_size: int, in_channels: int = 1, config: MAEConfig | None = None
) -> MaskedAutoEncoderViT:
    """A 2D MONAI masked autoencoder whose encoder matches the ViT student ``student``.

    Args:
        student: a ViT student name (``vit_tiny``, ``vit_nano``).
        input_size: side S of the (square) training images; a multiple of 16, fixed for this model.
        in_channels: image channels.
        config: masking ratio and decoder size (defaults of :class:`MAEConfig` when None).
    """
    if student not in VIT_SPECS:
        raise ValueError(f"MAE pre-training needs a ViT student ({', '.join(VIT_SPECS)}), got '{student}'")
    spec, cfg = VIT_SPECS[student], config or MAEConfig()
    if input_size < spec.patch_size or input_size % spec.patch_size:
        raise ValueError(f"input_size must be a positive multiple of {spec.patch_size}, got {input_size}")
    with warnings.catch_warnings():  # MONAI's sin-cos embedding calls torch.meshgrid without indexing=
        warnings.filterwarnings("ignore", message=r".*torch\.meshgrid.*indexing.*")
        model = _mae(spec, cfg, input_size, in_channels)
    for name, param in model.named_parameters():
        if ".norm_cross_attn." in name:  # created by MONAI, unused without cross-attention
            param.requires_grad_(False)
    return model


def _mae(spec: ViTSpec, cfg: MAEConfig, input_size: int, in_channels: int) -> MaskedAutoEncoderViT:
    return MaskedAutoEncoderViT(
        in_channels=in_channels,
        img_size=input_size,
        patch_size=spec.patch_size,
        hidden_size=spec.hidden_size,
        mlp_dim=spec.mlp_dim,
        num_layers=spec.num_layers,
        num_heads=spec.num_heads,
        masking_ratio=cfg.masking_ratio,
        decoder_hidden_size=cfg.decoder_hidden_size,
        decoder_mlp_dim=cfg.decoder_mlp_dim,
        decoder_num_layers=cfg.decoder_num_layers,
        decoder_num_heads=cfg.decoder_num_heads,
        proj_type="conv",
        pos_embed_type="sincos",
        decoder_pos_embed_type="sincos",
        spatial_dims=2,
        qkv_bias=spec.qkv_bias,
    )


def patchify(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """``(B, C, H, W)`` images to ``(B, (H/p)*(W/p), p*p*C)`` patch vectors in token order."""
    b, c, h, w = images.shape
    if h % patch_size or w % patch_size:
        raise ValueError(f"image sides {h}x{w} are not multiples of the patch size {patch_size}")
    x = images.reshape(b, c, h // patch_size, patch_size, w // patch_size, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch_size) * (w // patch_size), patch_size * patch_size * c)


def mae_loss(pred: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, *, norm_pix_loss: bool = True) -> torch.Tensor:
    """Mean squared error over the hidden patches.

    Args:
        pred: ``(B, N, D)`` reconstructions.
        mask: ``(B, N)``, 1 where the patch was hidden from the encoder.
        target: ``(B, N, D)`` patch vectors from :func:`patchify`.
        norm_pix_loss: normalise each target patch to zero mean and unit variance first.
    """
    if pred.shape != target.shape or mask.shape != pred.shape[:2]:
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)} disagree")
    target = target.float()
    if norm_pix_loss:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True, unbiased=False)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = ((pred.float() - target) ** 2).mean(dim=-1)
    mask = mask.float()
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


class MAETask(TrainingTask):
    """Masked-autoencoder pre-training on every task image (labelled or not).

    Args:
        config: masking / loss settings (``norm_pix_loss``); the model's own ``masking_ratio`` is used.
        val_data: validation samples / batches with ``image`` (None: no validation).
        val_batch_size: batch size when ``val_data`` is a Dataset.
        val_seed: seed of the masks drawn during validation, so validation numbers are comparable.
    """

    best_metric = "val_mae_loss"
    best_mode = "min"

    def __init__(
        self,
        *,
        config: MAEConfig | None = None,
        val_data: ValData | None = None,
        val_batch_size: int = 8,
        val_seed: int = 0,
    ) -> None:
        self.config = config or MAEConfig()
        self.val_data = val_data
        self.val_batch_size = val_batch_size
        self.val_seed = val_seed

    def _loss(self, model: nn.Module, batch: Mapping[str, Any]) -> torch.Tensor:
        inner = getattr(model, "module", model)
        if "image" not in batch:
            raise DataError(f"batch has no 'image'; keys present: {', '.join(sorted(batch))}")
        image = batch["image"].float()
        if tuple(image.shape[-2:]) != tuple(inner.img_size):
            raise ValueError(
                f"MAE model was built for {tuple(inner.img_size)} images, got {tuple(image.shape[-2:])}; "
                "resize the slices or build the MAE for this size"
            )
        pred, mask = model(image)
        target = patchify(image, int(inner.patch_size[0]))
        return mae_loss(pred, mask, target, norm_pix_loss=self.config.norm_pix_loss)

    def training_step(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor, dict[str, float]]:
        """Reconstruction loss of one batch of images (``loss``)."""
        loss = self._loss(model, move_to(batch, device_of(model)))
        return loss, {"loss": float(loss.detach())}

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Mean reconstruction loss over ``val_data`` with seeded masks as ``val_mae_loss``; {} without val data."""
        if self.val_data is None:
            return {}
        with torch.random.fork_rng(devices=[]):  # MONAI draws masks on the CPU generator
            torch.manual_seed(self.val_seed)
            loss = mean_over_loader(model, self.val_data, self._loss, batch_size=self.val_batch_size)
        return {"val_mae_loss": loss}


def _encoder_key(key: str, num_layers: int) -> str | None:
    """The student-encoder key for an MAE encoder key, or None when it has no counterpart."""
    if key == "cls_token" or key.startswith("patch_embedding."):
        return key
    if key.startswith("blocks."):
        _, index, rest = key.split(".", 2)
        if int(index) < num_layers:
            return f"blocks.{index}.{rest}"
        if int(index) == num_layers:  # MONAI appends the final LayerNorm to the block Sequential
            return f"norm.{rest}"
    return None


def transfer_mae_encoder(mae_model: nn.Module, student: nn.Module) -> dict[str, str]:
    """Copy the MAE encoder's weights into a ViT student's encoder, every one of them.

    Args:
        mae_model: a trained :class:`MaskedAutoEncoderViT` (from :func:`build_mae`).
        student: a :class:`~tskd.student.vit.ViTStudent` (or a :class:`StudentWithProjector` of one).

    Returns:
        the key mapping used, MAE key -> student encoder key (``student.encoder.<key>``).

    Raises:
        CheckpointError: when an MAE encoder weight has no place in the student, a student encoder
            weight gets no value, or shapes differ (the message names the keys).
    """
    mae = getattr(mae_model, "module", mae_model)
    vit = getattr(student, "module", student)
    if isinstance(vit, StudentWithProjector):
        vit = vit.student
    if not isinstance(vit, ViTStudent):
        raise ValueError(f"MAE weights can only go into a ViT student, got {type(vit).__name__}")
    encoder = vit.encoder
    target = encoder.state_dict()
    num_layers = len(encoder.blocks)
    mapping: dict[str, str] = {}
    unmatched: list[str] = []
    for key in mae.state_dict():
        if key.startswith(_DECODER_PREFIXES):
            continue
        dst = _encoder_key(key, num_layers)
        if dst is None or dst not in target:
            unmatched.append(key)
        else:
            mapping[key] = dst
    missing = sorted(set(target) - set(mapping.values()))
    if unmatched or missing:
        raise CheckpointError(
            "MAE encoder and student encoder do not match: "
            f"MAE weights with no place in the student: {unmatched or 'none'}; "
            f"student weights with no MAE value: {missing or 'none'}. "
            "Build the MAE with build_mae() for the same student name"
        )
    source = mae.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for src, dst in mapping.items():
        value = source[src]
        if dst == "patch_embedding.position_embeddings" and value.shape != target[dst].shape:
            value = resize_position_embeddings(value, _square(value.shape[1]), _square(target[dst].shape[1]))
        if value.shape != target[dst].shape:
            raise CheckpointError(
                f"MAE weight '{src}' has shape {tuple(value.shape)} but student weight '{dst}' has "
                f"{tuple(target[dst].shape)}; build the MAE with build_mae() for the same student name"
            )
        new_state[dst] = value.detach().clone()
    encoder.load_state_dict(new_state, strict=True)
    logger.info("copied %d MAE encoder tensors into student '%s'", len(new_state), vit.name)
    return mapping


def _square(n_tokens: int) -> tuple[int, int]:
    side = int(round(n_tokens**0.5))
    if side * side != n_tokens:
        raise CheckpointError(f"{n_tokens} position embeddings do not form a square grid")
    return side, side
