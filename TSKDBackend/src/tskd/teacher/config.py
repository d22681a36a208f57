"""The teacher stage's configuration (``teacher:`` section of a pipeline config or preset).

The defaults here are the single source of truth. ``base`` is ``"none"`` (no foundation weights:
a small randomly initialised SAM trains fully, no LoRA) or the path of a SAM / MedSAM checkpoint
(see :mod:`tskd.teacher.checkpoints`).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from tskd.config.base import ConfigBase
from tskd.engine.config import EngineConfig
from tskd.teacher.architectures import ARCHITECTURES, check_input_size

__all__ = ["BoxTuningConfig", "LoraConfig", "TeacherConfig", "DEFAULT_SCRATCH_ARCHITECTURE"]

DEFAULT_SCRATCH_ARCHITECTURE = "small"


@dataclasses.dataclass
class LoraConfig(ConfigBase):
    """LoRA on the image encoder.

    Args:
        rank: rank of the low-rank update.
        alpha: scaling numerator (the update is scaled by ``alpha / rank``).
        dropout: dropout on the adapter's input.
        targets: encoder module names to adapt: ``qkv``, ``proj`` (attention), ``lin1``, ``lin2`` (MLP).
    """

    rank: int = 4
    alpha: float = 4.0
    dropout: float = 0.0
    targets: tuple[str, ...] = ("qkv",)

    def __post_init__(self) -> None:
        if self.rank < 1:
            raise ValueError(f"lora.rank must be >= 1, got {self.rank}")
        if self.alpha <= 0:
            raise ValueError(f"lora.alpha must be > 0, got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"lora.dropout must be in [0, 1), got {self.dropout}")
        if not self.targets:
            raise ValueError("lora.targets must name at least one module (e.g. qkv)")
        self.targets = tuple(self.targets)


@dataclasses.dataclass
class BoxTuningConfig(ConfigBase):
    """The task-tuned box model: the foundation decoder fine-tuned on boxes drawn from the labelled
    cases (:mod:`tskd.teacher.box_tuning`), exported beside the student (``package/box_model/``) for
    the Slicer box tool and ``tskd segment-box --model RUN``, and the prompter of ``teaching: boxes``.

    Args:
        enabled: tune it when the teacher has foundation weights (a teacher trained from scratch has
            no box decoder to tune).
        jitter: each side of a training box moves by up to this share of the box's width or height
            (how far off a person's box may be).
        train: the loop's settings (the encoder is frozen: only the decoder trains, on the
            embeddings the teacher's training already computed).
    """

    enabled: bool = True
    jitter: float = 0.1
    train: EngineConfig = dataclasses.field(
        default_factory=lambda: EngineConfig(
            lr=1e-4, weight_decay=0.01, warmup_steps=10, max_steps=100, batch_size=8,
            checkpoint_every=50, validate_every=50, log_every=10,
        )
    )

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter < 0.5:
            raise ValueError(f"box_tuning.jitter must be in [0, 0.5), got {self.jitter}")


@dataclasses.dataclass
class TeacherConfig(ConfigBase):
    """Fine-tuning SAM / MedSAM as the task's teacher.

    Args:
        base: ``"none"`` or the path of the foundation checkpoint (``.pth``, ``.safetensors`` or
            a Hugging Face folder).
        architecture: ``"auto"`` (detect from the checkpoint; with base ``none``: ``small``) or
            a registry name (``vit_b``, ``vit_l``, ``vit_h``, ``medsam``, ``tiny``, ``small``).
        input_size: side of the square training input in pixels (multiple of 16; 256 is SAMed's
            and a good default, 1024 is SAM's native size).
        foundation_input_size: the input size when the teacher has foundation weights (``None``:
            ``input_size``). A preset sets it when its ``input_size`` suits the small from-scratch
            teacher but not a foundation model (cpu-small: 128 from scratch, LiteMedSAM's native 256).
        foundation_max_steps: the teacher's training steps when it has foundation weights (``None``:
            ``train.max_steps``). A preset sets it when its step count suits the from-scratch teacher
            but a foundation decoder needs far fewer (cpu-small: 600 from scratch, 200 for LiteMedSAM's
            frozen encoder, docs/benchmarks.md "Teacher: LiteMedSAM"). See :attr:`stage_train`.
        lora: LoRA settings (used when the encoder trains with LoRA, see ``encoder``).
        encoder: how a foundation encoder takes part in fine-tuning: ``"lora"`` (adapters on its
            attention train with the decoder), ``"frozen"`` (only the decoder trains; each image's
            embedding is computed once and kept, see ``embedding_cache``; training inputs are not
            augmented, so that they repeat) or ``"auto"`` (frozen when training on a CPU, LoRA on a
            GPU). Unused with base ``none`` (the whole small model trains).
        embedding_cache: where a frozen encoder's embeddings are kept: ``"auto"``
            (``$TSKD_HOME/embeddings``, shared by runs on the same images) or a folder.
        prompt_mode: ``"none"`` (prompt-free, the default) or ``"box"`` (boxes from labels).
        teaching: how the fine-tuned teacher labels the transfer set (and scores ``tskd suggest``):
            ``"prompt_free"`` (its own ``K`` class outputs, the paper's TS-KD) or ``"boxes"`` (its
            prediction's connected components become boxes that the published foundation decoder
            turns into masks, see :mod:`tskd.teacher.box_teacher`; needs foundation weights).
        box_tuning: the task-tuned box model (see :class:`BoxTuningConfig`).
        dice_weight: weight of the Dice term of the Dice + cross-entropy loss.
        ce_weight: weight of the cross-entropy term.
        train: the training loop's settings (steps, batch, learning rate...; see
            :class:`~tskd.engine.EngineConfig`), with this stage's defaults.
    """

    base: str = "none"
    architecture: str = "auto"
    input_size: int = 256
    foundation_input_size: int | None = None
    foundation_max_steps: int | None = None
    lora: LoraConfig = dataclasses.field(default_factory=LoraConfig)
    encoder: Literal["auto", "lora", "frozen"] = "auto"
    embedding_cache: str = "auto"
    prompt_mode: Literal["none", "box"] = "none"
    teaching: Literal["prompt_free", "boxes"] = "prompt_free"
    box_tuning: BoxTuningConfig = dataclasses.field(default_factory=BoxTuningConfig)
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    train: EngineConfig = dataclasses.field(
        default_factory=lambda: EngineConfig(
            lr=5e-4, weight_decay=0.01, warmup_steps=100, max_steps=3000, batch_size=4,
            checkpoint_every=200, validate_every=200,
        )
    )

    def __post_init__(self) -> None:
        if not self.base:
            raise ValueError("base must be 'none' or the path of a SAM / MedSAM checkpoint")
        if self.architecture != "auto" and self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture {self.architecture!r} is not one of auto, {', '.join(ARCHITECTURES)}"
            )
        check_input_size(self.input_size)
        if self.foundation_input_size is not None:
            check_input_size(self.foundation_input_size)
        if self.foundation_max_steps is not None and self.foundation_max_steps < 1:
            raise ValueError(f"foundation_max_steps must be >= 1 or null, got {self.foundation_max_steps}")
        if self.encoder not in ("auto", "lora", "frozen"):
            raise ValueError(f"encoder must be 'auto', 'lora' or 'frozen', got {self.encoder!r}")
        if not self.embedding_cache:
            raise ValueError("embedding_cache must be 'auto' or a folder")
        if self.teaching not in ("prompt_free", "boxes"):
            raise ValueError(f"teaching must be 'prompt_free' or 'boxes', got {self.teaching!r}")
        if self.prompt_mode not in ("none", "box"):
            raise ValueError(f"prompt_mode must be 'none' or 'box', got {self.prompt_mode!r}")
        if self.dice_weight < 0 or self.ce_weight < 0 or self.dice_weight + self.ce_weight == 0:
            raise ValueError("dice_weight and ce_weight must be >= 0 and not both 0")

    @property
    def uses_foundation_weights(self) -> bool:
        """``False`` when ``base`` is ``"none"``."""
        return self.base.lower() != "none"

    @property
    def model_input_size(self) -> int:
        """The teacher's input size: ``foundation_input_size`` with foundation weights when set, else ``input_size``."""
        if self.uses_foundation_weights and self.foundation_input_size is not None:
            return self.foundation_input_size
        return self.input_size

    @property
    def stage_train(self) -> EngineConfig:
        """The training-loop settings the teacher stage runs with: ``train``, with ``foundation_max_steps``
        as its step count when the teacher has foundation weights (validation, checkpoints and warm-up
        brought within it)."""
        steps = self.foundation_max_steps
        if not self.uses_foundation_weights or steps is None:
            return self.train
        return dataclasses.replace(
            self.train, max_steps=steps, warmup_steps=min(self.train.warmup_steps, steps // 10),
            validate_every=min(self.train.validate_every, steps), checkpoint_every=min(self.train.checkpoint_every, steps),
        )

    def resolved_encoder(self, on_cpu: bool) -> str:
        """``"lora"`` or ``"frozen"``: ``auto`` is frozen when training on a CPU (``on_cpu``)."""
        if self.encoder == "auto":
            return "frozen" if on_cpu else "lora"
        return self.encoder

    def resolved_architecture(self) -> str:
        """The architecture to build without foundation weights (``auto`` -> ``small``).

        With foundation weights ``auto`` stays ``auto``: the checkpoint decides.
        """
        if self.architecture == "auto" and not self.uses_foundation_weights:
            return DEFAULT_SCRATCH_ARCHITECTURE
        return self.architecture
