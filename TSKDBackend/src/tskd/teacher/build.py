"""Building the teacher a :class:`~tskd.teacher.config.TeacherConfig` describes.

* ``base: none`` -> a randomly initialised SAM of the configured small size, the whole network
  trainable, no LoRA, ``has_foundation_weights = False`` (a warning says so plainly);
* ``base: <checkpoint>`` -> the foundation weights at ``input_size`` with a ``K``-class decoder and
  either LoRA on the image encoder (adapters and mask decoder train) or a frozen encoder (only the
  decoder trains; with an embedding cache, each image is encoded once).
"""

from __future__ import annotations

import logging
from pathlib import Path

from tskd.teacher.architectures import build_sam
from tskd.teacher.checkpoints import load_pretrained_segmenter
from tskd.teacher.config import TeacherConfig
from tskd.teacher.embedding_cache import EmbeddingCache
from tskd.teacher.lora import apply_lora, set_trainable
from tskd.teacher.model import SamSegmenter

__all__ = ["build_teacher", "build_scratch_segmenter", "attach_embedding_cache"]

logger = logging.getLogger(__name__)


def build_scratch_segmenter(architecture: str, *, input_size: int, num_classes: int) -> SamSegmenter:
    """A randomly initialised segmenter (no foundation weights), trainable throughout (see ``set_trainable``).

    Args:
        architecture: registry name (``tiny``, ``small``, or a full size).
        input_size: side ``S`` of the input (multiple of 16).
        num_classes: ``K`` including background.
    """
    sam = build_sam(architecture, input_size=input_size, num_classes=num_classes)
    model = SamSegmenter(sam=sam, num_classes=num_classes, architecture=architecture, has_foundation_weights=False)
    set_trainable(model)
    return model


def attach_embedding_cache(model: SamSegmenter, root: Path | None) -> None:
    """Give a teacher whose foundation encoder is frozen an embedding cache under ``root`` (nothing
    for a trainable encoder, a model without foundation weights, or ``root`` None)."""
    if root is None or not model.has_foundation_weights or model.lora is not None or not model.encoder_frozen:
        return
    key = EmbeddingCache.key_for(model.base.sha256, model.architecture, model.input_size, model.input_scaling)
    model.embedding_cache = EmbeddingCache(root, key)


def build_teacher(
    config: TeacherConfig, num_classes: int, *, on_cpu: bool = False, embedding_cache_root: Path | None = None
) -> SamSegmenter:
    """The teacher to fine-tune, on CPU (the engine moves it to its device).

    Args:
        config: the teacher stage's configuration.
        num_classes: ``K`` including background, from the dataset.
        on_cpu: whether it will train on a CPU (``teacher.encoder: auto`` then freezes the encoder).
        embedding_cache_root: where a frozen encoder keeps its embeddings (None: computed every time).

    Raises:
        CheckpointError: the base checkpoint is missing or does not fit.
    """
    if not config.uses_foundation_weights:
        architecture = config.resolved_architecture()
        logger.warning(
            "teacher: no foundation weights (base: none); training a randomly initialised SAM '%s' from "
            "scratch, without LoRA. Results will be far below a SAM/MedSAM teacher.", architecture
        )
        model = build_scratch_segmenter(architecture, input_size=config.model_input_size, num_classes=num_classes)
    else:
        model = load_pretrained_segmenter(
            config.base, architecture=config.architecture, input_size=config.model_input_size, num_classes=num_classes
        )
        if config.resolved_encoder(on_cpu) == "lora":
            apply_lora(model, config.lora)
        else:
            set_trainable(model)
            model.freeze_encoder()
            attach_embedding_cache(model, embedding_cache_root)
            logger.info("teacher: %s with a frozen encoder; only the mask decoder trains%s", model.architecture,
                        f", embeddings kept in {model.embedding_cache.folder}" if model.embedding_cache else "")
    model.prompt_mode = config.prompt_mode
    return model
