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

from tskd.lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, globals(), {
    "architectures": ["available_architectures", "build_sam", "get_architecture", "sam_config"],
    "build": ["build_scratch_segmenter", "build_teacher"],
    "checkpoints": ["BaseCheckpoint", "load_pretrained_segmenter", "load_sam"],
    "config": ["LoraConfig", "TeacherConfig"],
    "lora": ["apply_lora", "trainable_parameter_report"],
    "model": ["SamSegmenter", "boxes_from_labels"],
    "storage": ["load_teacher", "read_teacher_info", "save_teacher"],
    "task": ["TeacherTask"],
})
