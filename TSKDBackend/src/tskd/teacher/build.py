"""Building the teacher a :class:`~tskd.teacher.config.TeacherConfig` describes.

* ``base: none`` -> a randomly initialised SAM of the configured small size, the whole network
  trainable, no LoRA, ``has_foundation_weights = False`` (a warning says so plainly);
* ``base: <checkpoint>`` -> the foundation weights at ``input_size`` with a ``K``-class decoder,
  LoRA on the image encoder, only adapters and mask decoder trainable.
"""

from __future__ import annotations

import logging

from tskd.teacher.architectures import build_sam
from tskd.teacher.checkpoints import load_pretrained_segmenter
from tskd.teacher.config import TeacherConfig
from tskd.teacher.lora import apply_lora, set_trainable
from tskd.teacher.model import SamSegmenter

__all__ = ["build_teacher", "build_scratch_segmenter"]

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


def build_teacher(config: TeacherConfig, num_classes: int) -> SamSegmenter:
    """The teacher to fine-tune, on CPU (the engine moves it to its device).

    Args:
        config: the teacher stage's configuration.
        num_classes: ``K`` including background, from the dataset.

    Raises:
        CheckpointError: the base checkpoint is missing or does not fit.
    """
    if not config.uses_foundation_weights:
        architecture = config.resolved_architecture()
        logger.warning(
            "teacher: no foundation weights (base: none); training a randomly initialised SAM '%s' from "
            "scratch, without LoRA. Results will be far below a SAM/MedSAM teacher.", architecture
        )
        model = build_scratch_segmenter(architecture, input_size=config.input_size, num_classes=num_classes)
    else:
        model = load_pretrained_segmenter(
            config.base, architecture=config.architecture, input_size=config.input_size, num_classes=num_classes
        )
        apply_lora(model, config.lora)
    model.prompt_mode = config.prompt_mode
    return model
