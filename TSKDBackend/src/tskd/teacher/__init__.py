"""The TS-KD teacher: SAM / MedSAM fine-tuned with LoRA for prompt-free ``K``-class segmentation.

Modules, one concept each:

* :mod:`~tskd.teacher.architectures` - SAM sizes by name and ``SamConfig`` building;
* :mod:`~tskd.teacher.keymap`, :mod:`~tskd.teacher.adapt`, :mod:`~tskd.teacher.checkpoints` -
  loading official / MedSAM / Hugging Face weights, resized to the input size, ``K`` classes;
* :mod:`~tskd.teacher.model` - :class:`SamSegmenter`, the ``nn.Module``;
* :mod:`~tskd.teacher.lora` - LoRA through ``peft`` and the trainable-parameter policy;
* :mod:`~tskd.teacher.config`, :mod:`~tskd.teacher.build` - the stage config and building from it;
* :mod:`~tskd.teacher.storage` - saving / loading the fine-tuned teacher;
* :mod:`~tskd.teacher.task` - loss and validation for the training engine.
"""

from __future__ import annotations

from tskd.teacher.architectures import (
    available_architectures,
    build_sam,
    get_architecture,
    sam_config,
)
from tskd.teacher.build import build_scratch_segmenter, build_teacher
from tskd.teacher.checkpoints import BaseCheckpoint, load_pretrained_segmenter, load_sam
from tskd.teacher.config import LoraConfig, TeacherConfig
from tskd.teacher.lora import apply_lora, trainable_parameter_report
from tskd.teacher.model import SamSegmenter, boxes_from_labels
from tskd.teacher.storage import load_teacher, read_teacher_info, save_teacher
from tskd.teacher.task import TeacherTask

__all__ = [
    "available_architectures",
    "build_sam",
    "get_architecture",
    "sam_config",
    "build_scratch_segmenter",
    "build_teacher",
    "BaseCheckpoint",
    "load_pretrained_segmenter",
    "load_sam",
    "LoraConfig",
    "TeacherConfig",
    "apply_lora",
    "trainable_parameter_report",
    "SamSegmenter",
    "boxes_from_labels",
    "load_teacher",
    "read_teacher_info",
    "save_teacher",
    "TeacherTask",
]
