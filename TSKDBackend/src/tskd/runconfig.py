"""The whole pipeline's configuration: one section per stage, resolved from a preset, a YAML file
and command-line overrides (in that order), and saved in the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

from tskd.config import ConfigBase, deep_merge, load_preset, load_yaml
from tskd.data.config import AugmentConfig, PreparedSpec
from tskd.engine.config import EngineConfig
from tskd.errors import ConfigError
from tskd.student.config import DistillConfig, FinetuneConfig, MAEConfig
from tskd.synthesis.config import DiffusionConfig
from tskd.teacher.config import TeacherConfig

__all__ = ["DataConfig", "ReferenceConfig", "ExportConfig", "UpdateConfig", "PipelineConfig", "resolve_config", "check_settings",
           "update_schedule", "DEFAULT_PRESET"]

DEFAULT_PRESET = "cpu-small"


@dataclass
class DataConfig(ConfigBase):
    """How the dataset becomes training data.

    Args:
        prepared: slicing, normalisation and input size of the 2D samples.
        augment: augmentation of training samples.
        val_fraction: share of labelled subjects held out for validation.
        subject_pattern: regular expression whose first group is the subject id in a case name
            (cases of one subject never straddle the split).
        max_labelled: use at most this many labelled training cases (the rest of the training
            labels are ignored; their images still join the transfer set as unlabelled images).
        use_unlabelled: put unlabelled images into the transfer set.
    """

    prepared: PreparedSpec = field(default_factory=PreparedSpec)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_fraction: float = 0.2
    subject_pattern: Optional[str] = None
    max_labelled: Optional[int] = None
    use_unlabelled: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.max_labelled is not None and self.max_labelled < 1:
            raise ValueError(f"max_labelled must be at least 1, got {self.max_labelled}")


MAX_REFERENCE_MEMBERS = 8


@dataclass
class ReferenceConfig(ConfigBase):
    """The supervised reference of every run: the same student trained on the labelled cases alone.

    It has the distilled student's architecture, input size and augmentation, and a budget of
    ``distill.train.max_steps + finetune.train.max_steps`` steps with the distill section's other
    training settings (those of a student trained from scratch). Both exported students are scored
    on the validation volumes and the better one becomes the run's model (``RUN/package``); see
    docs/architecture.md ("The supervised reference").

    Args:
        enabled: train the reference and choose; False exports the distilled student unchecked.
        min_val_subjects: with fewer validation subjects than this the choice is still made (by the
            validation Dice) but reported as too few to tell.
        members: how many such students to train, each with its own seeds (the run's seed plus its
            index: initial weights, batch order and augmentation draws); with two or more the
            reference is their
            ensemble (mean class probabilities, :class:`tskd.student.ensemble.StudentEnsemble`),
            exported as one network. Each member costs the reference's training time again.
    """

    enabled: bool = True
    min_val_subjects: int = 3
    members: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.members <= MAX_REFERENCE_MEMBERS:
            raise ValueError(f"members must be between 1 and {MAX_REFERENCE_MEMBERS}, got {self.members}")
        if self.min_val_subjects < 1:
            raise ValueError(f"min_val_subjects must be at least 1, got {self.min_val_subjects}")


@dataclass
class ExportConfig(ConfigBase):
    """The package a run exports: its post-processing, chosen on the validation cases.

    Each exported student segments the validation cases once; each post-processing method of
    :data:`tskd.runtime.postprocess.POSTPROCESSING_METHODS` is scored on them, and a method other
    than ``none`` is kept only where it raises the mean validation Dice by at least ``min_gain`` and
    lowers no class's Dice by more than that (as nnU-Net keeps its own largest-component step only
    where its cross-validation gains from it).
    The package records the choice and every method's validation Dice; ``tskd.runtime`` applies it.
    Measured in docs/benchmarks.md ("Keeping the largest connected component").

    Args:
        postprocessing: ``auto`` (choose on the validation cases as above), or one method to apply
            without choosing.
        postprocessing_min_gain: the smallest mean validation Dice gain that makes ``auto`` keep a method.
    """

    postprocessing: str = "auto"
    postprocessing_min_gain: float = 0.002

    def __post_init__(self) -> None:
        # "auto" (the presets' value) is checked without importing the runtime (numpy) into the service
        if self.postprocessing != "auto" and self.postprocessing not in _postprocessing_methods():
            raise ValueError(f"postprocessing must be auto or one of {', '.join(_postprocessing_methods())}, "
                             f"got {self.postprocessing!r}")
        if not 0.0 <= self.postprocessing_min_gain < 1.0:
            raise ValueError(f"postprocessing_min_gain must be in [0, 1), got {self.postprocessing_min_gain}")


def _postprocessing_methods() -> tuple:
    from tskd.runtime.postprocess import POSTPROCESSING_METHODS

    return POSTPROCESSING_METHODS


@dataclass
class UpdateConfig(ConfigBase):
    """Updating the model of a previous run with new or corrected labels (a short retrain).

    With ``from_run`` set, the teacher resumes from the previous run's fine-tuned teacher, the
    students start from the previous students, and every stage trains for a fraction of this
    config's (the preset's) schedule; the diffusion model and its synthetic images are reused.
    Each preset's ``update`` section says how short (see ``tskd presets NAME``).

    Args:
        from_run: the previous run folder (a finished ``tskd train`` run); None trains from scratch.
        teacher_steps: the teacher's steps as a fraction of its stage's (``teacher.stage_train``: with
            foundation weights ``teacher.foundation_max_steps`` when set).
        student_steps: the distillation, fine-tuning and reference steps as a fraction of theirs.
        reuse_synthesis: copy the previous diffusion model and relabel its synthetic images with the
            updated teacher instead of training and sampling again.
    """

    from_run: Optional[str] = None
    teacher_steps: float = 0.3
    student_steps: float = 0.3
    reuse_synthesis: bool = True

    def __post_init__(self) -> None:
        for name in ("teacher_steps", "student_steps"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must be a fraction of the preset's steps in (0, 1], got {value}")


@dataclass
class PipelineConfig(ConfigBase):
    """Every setting of a TS-KD run.

    Args:
        seed: the run's seed (also the default seed of every stage's training loop).
        data: dataset to 2D samples.
        teacher: fine-tuning the foundation model.
        synthesis: the diffusion model that grows the transfer set, and its quality gate.
        distill: distilling the teacher into the student on the transfer set.
        mae: MAE pre-training of a ViT student (baseline and optional initialisation).
        finetune: fine-tuning the distilled student on the labelled cases.
        reference: the student trained on the labelled cases alone, and the choice between the two.
        export: the exported package's post-processing, chosen on the validation cases.
        update: start from a previous run's models with a short schedule (a fast retrain).
    """

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    synthesis: DiffusionConfig = field(default_factory=DiffusionConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    mae: MAEConfig = field(default_factory=MAEConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    reference: ReferenceConfig = field(default_factory=ReferenceConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    update: UpdateConfig = field(default_factory=UpdateConfig)

    def engine_configs(self) -> Iterator[tuple[str, EngineConfig]]:
        """Each stage's training-loop settings, by dotted path (``teacher.train``...)."""
        for name in ("teacher", "synthesis", "distill", "mae", "finetune"):
            yield f"{name}.train", getattr(self, name).train


def resolve_config(
    *,
    preset: str | None = DEFAULT_PRESET,
    config_file: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    max_steps: int | None = None,
    input_size: int | None = None,
    seed: int | None = None,
    base: str | None = None,
) -> PipelineConfig:
    """Build the pipeline config: preset, then a YAML file, then explicit overrides.

    Args:
        preset: a name from :func:`tskd.config.available_presets` (None: class defaults only).
        config_file: YAML with any subset of the sections.
        overrides: a nested mapping applied last (e.g. from the service).
        max_steps: cap every stage's ``train.max_steps`` (a smoke run); warm-up is shortened to at
            most a tenth of the steps so that the learning rate still reaches its peak.
        input_size: the 2D sample size of the data and the teacher, exactly (a preset's
            ``fit_to_data`` is turned off).
        seed: the run seed, also given to every stage's training loop.
        base: the teacher's foundation checkpoint (``none`` for a randomly initialised teacher).
    """
    data: dict[str, Any] = load_preset(preset) if preset else {}
    source = f"preset '{preset}'" if preset else "defaults"
    layers = [load_yaml(config_file) if config_file else {}, overrides or {}]
    if config_file:
        data = deep_merge(data, layers[0])
        source += f" + {config_file}"
    if overrides:
        data = deep_merge(data, overrides)
    config = PipelineConfig.from_dict(data, source=source)
    changes: dict[str, Any] = {}
    if any("max_steps" in _nested(layer, "teacher", "train") and "foundation_max_steps" not in _nested(layer, "teacher")
           for layer in layers):
        # the user's own teacher.train.max_steps, not a preset's: the steps they asked for, with or without
        # foundation weights (the preset's foundation_max_steps would otherwise win, see TeacherConfig.stage_train)
        changes["teacher"] = {"foundation_max_steps": None}
    if input_size is not None:
        changes = deep_merge(changes, {"data": {"prepared": {"input_size": input_size, "fit_to_data": False}}, "teacher": {"input_size": input_size, "foundation_input_size": None}})
    if base is not None:
        changes = deep_merge(changes, {"teacher": {"base": base}})
    if seed is not None:
        changes["seed"] = seed
    run_seed = seed if seed is not None else config.seed
    for path, engine in config.engine_configs():
        section, _ = path.split(".")
        train: dict[str, Any] = {}
        if seed is not None or "seed" not in _nested(data, section, "train"):
            train["seed"] = run_seed
        if max_steps is not None:
            if max_steps < 1:
                raise ConfigError(f"--max-steps must be at least 1, got {max_steps}")
            train["max_steps"] = min(engine.max_steps, max_steps)
            train["warmup_steps"] = min(engine.warmup_steps, max(0, max_steps // 10))
            train["validate_every"] = min(engine.validate_every, max_steps)
            train["checkpoint_every"] = min(engine.checkpoint_every, max_steps)
        if train:
            changes = deep_merge(changes, {section: {"train": train}})
    if max_steps is not None:  # the teacher's other step counts: with foundation weights, and the box decoder's
        box = config.teacher.box_tuning.train
        capped: dict[str, Any] = {"box_tuning": {"train": {
            "max_steps": min(box.max_steps, max_steps), "warmup_steps": min(box.warmup_steps, max(0, max_steps // 10)),
            "validate_every": min(box.validate_every, max_steps), "checkpoint_every": min(box.checkpoint_every, max_steps)}}}
        if config.teacher.foundation_max_steps is not None and "foundation_max_steps" not in _nested(changes, "teacher"):
            capped["foundation_max_steps"] = min(config.teacher.foundation_max_steps, max_steps)
        changes = deep_merge(changes, {"teacher": capped})
    if changes:
        config = PipelineConfig.from_dict(deep_merge(config.to_dict(), changes), source=f"{source} + options")
    return _resolve_base_name(config)


def update_schedule(config: PipelineConfig) -> dict[str, int]:
    """The step counts of an update run (``update.from_run``): each stage's ``train.max_steps``
    times ``update.teacher_steps`` (teacher) or ``update.student_steps`` (distill, finetune; the
    reference gets their sum), rounded, at least 1. Synthesis is not trained when reused.

    Returns:
        ``{"teacher": n, "distill": n, "finetune": n, "reference": n}``.
    """
    def part(steps: int, fraction: float) -> int:
        return max(1, int(round(steps * fraction)))

    schedule = {
        "teacher": part(config.teacher.stage_train.max_steps, config.update.teacher_steps),
        "distill": part(config.distill.train.max_steps, config.update.student_steps),
        "finetune": part(config.finetune.train.max_steps, config.update.student_steps),
    }
    schedule["reference"] = schedule["distill"] + schedule["finetune"]
    return schedule


def check_settings(preset: str | None, settings: dict[str, Any], *, source: str = "settings") -> PipelineConfig:
    """The config ``tskd train --preset PRESET --config FILE`` would start from, ``FILE`` holding
    ``settings``: checked field by field without resolving the teacher's base and without
    importing model code (the service checks a job's settings with it when the job is created).

    Raises:
        ConfigError: naming ``source`` and the first field that is unknown or invalid.
    """
    data: dict[str, Any] = load_preset(preset) if preset else {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (data, teacher, ...), got {type(settings).__name__}")
    return PipelineConfig.from_dict(deep_merge(data, settings), source=source)


def _resolve_base_name(config: PipelineConfig) -> PipelineConfig:
    """``teacher.base`` as a path: ``auto`` and weights names (``medsam-vit-b``) looked up in the cache
    (``auto`` in the order for the teacher's device: :func:`tskd.foundation.resolve.preference_order`).

    The resolved path is what the run folder's ``config.yaml`` records, so a later ``--base auto``
    that would pick other weights is refused by the run folder instead of mixing two teachers.
    """
    from tskd.foundation.resolve import resolve_base

    base = config.teacher.base
    resolved = resolve_base(base, device=config.teacher.train.device)  # auto: LiteMedSAM first on a CPU
    if resolved == base:
        return config
    return PipelineConfig.from_dict(deep_merge(config.to_dict(), {"teacher": {"base": resolved}}),
                                    source=f"--base {base}")


def _nested(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    for key in keys:
        value = data.get(key) if isinstance(data, dict) else None
        data = value if isinstance(value, dict) else {}
    return data
