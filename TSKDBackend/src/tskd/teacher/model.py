"""SAM as a prompt-free semantic segmentation network of ``K`` classes (the TS-KD teacher).

:class:`SamSegmenter` wraps a :class:`transformers.SamModel` whose mask decoder has
``num_multimask_outputs = K`` (``K + 1`` mask tokens). In the default *prompt-free* mode (as in
SAMed) the decoder sees no point or box tokens, only its own output tokens, and the image
embedding plus SAM's learned "no mask" dense embedding; with multimask output the ``K`` masks
become the ``K`` class logits (class 0 = background). The low-resolution masks (``S/4``) are
upsampled bilinearly to the input size.

A second, optional mode takes box prompts: one box per foreground class, built from the labels
with :func:`boxes_from_labels` (absent classes are marked with ``-1`` and enter the decoder as
SAM's "not a point" embedding). The boxes' corner tokens are appended to the decoder's tokens in
class order, so the decoder can learn which pair belongs to which class. This mode needs the
boxes at inference time too; it is meant for prompted fine-tuning experiments.

Inputs are normalised intensities ``(B, 1, S, S)`` (``tskd.preprocess`` does the normalisation);
the single channel is repeated to SAM's three. LiteMedSAM (``input_scaling == "minmax"``) was
trained on images scaled to ``[0, 1]`` by their own minimum and maximum, so its inputs are rescaled
so per image first (any per-image affine normalisation before that leaves its input unchanged). The module is plain: no state besides weights and
a few descriptive attributes; a stateful predictor for whole volumes lives elsewhere.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import SamModel

__all__ = ["SamSegmenter", "boxes_from_labels"]


class SamSegmenter(nn.Module):
    """Prompt-free ``K``-class segmentation with SAM's encoder and a ``K``-output mask decoder.

    Args:
        sam: the SAM model; its mask decoder must have ``num_multimask_outputs == num_classes``.
        num_classes: ``K`` classes including background.
        architecture: registry name of the SAM size (see :mod:`tskd.teacher.architectures`).
        has_foundation_weights: ``False`` for a randomly initialised model (``base: none``), so
            reports and logs can say plainly that no foundation model was used.
        base: description of the foundation checkpoint the weights came from (a
            :class:`tskd.teacher.checkpoints.BaseCheckpoint`), ``None`` without one.

    Attributes:
        input_size: side ``S`` of the square input.
        embedding_dim: channels ``C`` of :meth:`image_embeddings` (256 for SAM).
        embedding_size: side of the image embedding grid (``S / 16``; ``S / 4`` for LiteMedSAM).
        input_scaling: ``"none"`` or ``"minmax"`` (see the module's docstring).
        lora: the LoRA settings applied to the encoder (set by :func:`tskd.teacher.lora.apply_lora`).
        embedding_cache: with the encoder frozen, an :class:`~tskd.teacher.embedding_cache.EmbeddingCache`
            that :meth:`image_embeddings` reads from and fills (set by :meth:`freeze_encoder`).
        prompt_mode: ``"none"`` or ``"box"``, how the model was (or is to be) trained.
    """

    def __init__(
        self,
        *,
        sam: SamModel,
        num_classes: int,
        architecture: str,
        has_foundation_weights: bool,
        base: Any = None,
    ) -> None:
        super().__init__()
        outputs = sam.config.mask_decoder_config.num_multimask_outputs
        if outputs != num_classes:
            raise ValueError(
                f"the SAM mask decoder has {outputs} multimask outputs but num_classes={num_classes}; "
                "build the SamConfig with num_multimask_outputs = num_classes"
            )
        if has_foundation_weights and base is None:
            raise ValueError("a model with foundation weights needs the description of its base checkpoint")
        self.sam = sam
        self.num_classes = int(num_classes)
        self.architecture = architecture
        self.has_foundation_weights = bool(has_foundation_weights)
        self.base = base
        self.lora: Any = None
        self.embedding_cache: Any = None
        self.prompt_mode = "none"
        from tskd.teacher.architectures import ARCHITECTURES, get_architecture

        self.input_scaling = get_architecture(architecture).input_scaling if architecture in ARCHITECTURES else "none"
        self.input_size = int(sam.config.vision_config.image_size)
        self.embedding_dim = int(sam.config.vision_config.output_channels)
        self.embedding_size = int(sam.config.prompt_encoder_config.image_embedding_size)

    def extra_repr(self) -> str:
        return (
            f"architecture={self.architecture!r}, num_classes={self.num_classes}, input_size={self.input_size}, "
            f"has_foundation_weights={self.has_foundation_weights}"
        )

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1 or x.shape[2] != self.input_size or x.shape[3] != self.input_size:
            raise ValueError(
                f"expected images of shape (B, 1, {self.input_size}, {self.input_size}), got {tuple(x.shape)}"
            )
        if self.input_scaling == "minmax":
            low = x.amin(dim=(2, 3), keepdim=True)
            high = x.amax(dim=(2, 3), keepdim=True)
            x = (x - low) / (high - low).clamp(min=1e-8)
        return x.expand(-1, 3, -1, -1)

    def image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        """SAM's image embedding, the target of feature distillation.

        Args:
            x: normalised images ``(B, 1, S, S)``.

        Returns:
            ``(B, C, G, G)`` with ``C = embedding_dim`` and ``G = embedding_size``.
        """
        if self.embedding_cache is not None:
            return self.embedding_cache.embeddings(self._encode, x)
        return self._encode(x)

    def _encode(self, x: torch.Tensor) -> torch.Tensor:
        out = self.sam.vision_encoder(pixel_values=self._pixels(x))
        return out if isinstance(out, torch.Tensor) else out.last_hidden_state  # TinyViT / transformers' ViT

    @property
    def encoder_frozen(self) -> bool:
        """True when no weight of the image encoder trains (no LoRA, foundation weights)."""
        return not any(p.requires_grad for p in self.sam.vision_encoder.parameters())

    def freeze_encoder(self, cache: Any = None) -> None:
        """Stop the image encoder from training and, with ``cache``, compute each image's embedding once.

        Args:
            cache: an :class:`~tskd.teacher.embedding_cache.EmbeddingCache` for this encoder, or None.

        Raises:
            ValueError: the encoder has LoRA adapters (their embeddings change as they train).
        """
        if self.lora is not None:
            raise ValueError("an encoder with LoRA adapters trains; it cannot be frozen")
        for parameter in self.sam.vision_encoder.parameters():
            parameter.requires_grad_(False)
        self.embedding_cache = cache

    def decode(self, embeddings: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """Class logits from image embeddings.

        Args:
            embeddings: ``(B, C, S/16, S/16)`` from :meth:`image_embeddings`.
            boxes: ``None`` (prompt-free), or box prompts ``(B, N, 4)`` / ``(B, 4)`` as
                ``x1, y1, x2, y2`` in input pixels; rows of ``-1`` mark absent boxes.

        Returns:
            logits ``(B, K, S, S)``.
        """
        batch, _, height, width = embeddings.shape
        positional = self.sam.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
        prompt_encoder = self.sam.prompt_encoder
        dense = prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1).expand(batch, -1, height, width)
        sparse = None if boxes is None else self._box_tokens(boxes, batch)
        masks, _ = self.sam.mask_decoder(
            image_embeddings=embeddings,
            image_positional_embeddings=positional,
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
        )
        low_res = masks[:, 0]  # (B, K, S/4, S/4)
        return F.interpolate(low_res, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)

    def box_masks(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        """SAM's own use of a box: one mask per box, each box a separate prompt (single-mask output).

        Unlike :meth:`decode` with boxes (the class-ordered box mode trained by the teacher task),
        this is what the published SAM / MedSAM / LiteMedSAM decoders were trained for, so it works
        zero-shot: the first mask token's output for each box.

        Args:
            embeddings: ``(B, C, G, G)`` from :meth:`image_embeddings`.
            boxes: ``(B, N, 4)`` as ``x1, y1, x2, y2`` in input pixels (``0..S-1``).

        Returns:
            mask logits ``(B, N, S, S)`` (foreground where > 0).
        """
        if boxes.ndim != 3 or boxes.shape[0] != embeddings.shape[0] or boxes.shape[2] != 4:
            raise ValueError(f"expected boxes of shape ({embeddings.shape[0]}, N, 4), got {tuple(boxes.shape)}")
        batch = embeddings.shape[0]
        prompt_encoder = self.sam.prompt_encoder
        boxes = boxes.to(device=embeddings.device, dtype=torch.float32)
        sparse, dense = prompt_encoder(input_points=None, input_labels=None, input_boxes=boxes, input_masks=None)
        positional = self.sam.get_image_wide_positional_embeddings().repeat(batch, 1, 1, 1)
        masks, _ = self.sam.mask_decoder(
            image_embeddings=embeddings,
            image_positional_embeddings=positional.to(embeddings.dtype),
            sparse_prompt_embeddings=sparse.to(embeddings.dtype),
            dense_prompt_embeddings=dense.to(embeddings.dtype),
            multimask_output=False,
        )
        low_res = masks[:, :, 0]  # (B, N, 4G, 4G)
        if low_res.shape[-1] == self.input_size:
            return low_res
        return F.interpolate(low_res, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)

    def forward_with_embeddings(
        self, x: torch.Tensor, boxes: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, S, S)`` and image embeddings ``(B, C, S/16, S/16)`` from one encoder pass."""
        embeddings = self.image_embeddings(x)
        return self.decode(embeddings, boxes), embeddings

    def forward(self, x: torch.Tensor, boxes: torch.Tensor | None = None) -> torch.Tensor:
        """Segment a batch.

        Args:
            x: normalised images ``(B, 1, S, S)``.
            boxes: optional box prompts, see :meth:`decode` and :func:`boxes_from_labels`.

        Returns:
            class logits ``(B, K, S, S)``.
        """
        return self.decode(self.image_embeddings(x), boxes)

    def _box_tokens(self, boxes: torch.Tensor, batch: int) -> torch.Tensor:
        """Sparse prompt tokens ``(B, 1, 2N, C)`` for ``N`` boxes per image (absent -> "not a point")."""
        if boxes.ndim == 2:
            boxes = boxes[:, None, :]
        if boxes.ndim != 3 or boxes.shape[0] != batch or boxes.shape[2] != 4:
            raise ValueError(f"expected boxes of shape ({batch}, N, 4) or ({batch}, 4), got {tuple(boxes.shape)}")
        prompt_encoder = self.sam.prompt_encoder
        weight = prompt_encoder.not_a_point_embed.weight
        boxes = boxes.to(device=weight.device, dtype=torch.float32)
        absent = (boxes < 0).any(dim=-1)  # (B, N)
        sparse, _ = prompt_encoder(
            input_points=None, input_labels=None, input_boxes=boxes.clamp(min=0), input_masks=None
        )  # (B, N, 2, C)
        sparse = torch.where(absent[:, :, None, None], weight.to(sparse.dtype), sparse)
        return sparse.reshape(batch, 1, -1, sparse.shape[-1])


def boxes_from_labels(labels: torch.Tensor, num_classes: int, *, margin: int = 0) -> torch.Tensor:
    """One bounding box per foreground class, for the box-prompt mode.

    Args:
        labels: int label maps ``(B, H, W)`` with values ``0..K-1``.
        num_classes: ``K`` including background.
        margin: pixels added on every side of each box (clamped to the image).

    Returns:
        float boxes ``(B, K-1, 4)`` as ``x1, y1, x2, y2`` pixel indices (inclusive corners, ``x``
        along the last axis); box ``c - 1`` belongs to class ``c``; a class absent from an image
        gets ``-1`` in all four coordinates.
    """
    if labels.ndim != 3:
        raise ValueError(f"expected labels of shape (B, H, W), got {tuple(labels.shape)}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    _, height, width = labels.shape
    classes = torch.arange(1, num_classes, device=labels.device)
    masks = labels[:, None, :, :] == classes[None, :, None, None]  # (B, K-1, H, W)
    rows = masks.any(dim=3)  # (B, K-1, H)
    cols = masks.any(dim=2)  # (B, K-1, W)
    ys = torch.arange(height, device=labels.device)
    xs = torch.arange(width, device=labels.device)
    y1 = torch.where(rows, ys, height).amin(dim=2)
    y2 = torch.where(rows, ys, -1).amax(dim=2)
    x1 = torch.where(cols, xs, width).amin(dim=2)
    x2 = torch.where(cols, xs, -1).amax(dim=2)
    boxes = torch.stack(
        [(x1 - margin).clamp(min=0), (y1 - margin).clamp(min=0),
         (x2 + margin).clamp(max=width - 1), (y2 + margin).clamp(max=height - 1)],
        dim=-1,
    ).to(torch.float32)
    present = rows.any(dim=2)
    return torch.where(present[..., None], boxes, torch.full_like(boxes, -1.0))
