"""Updating a previous run's model with new or corrected labels: a fast retrain (``update.from_run``).

An update run is an ordinary run folder whose stages start from a previous finished run instead of
from scratch:

- the data stage keeps the previous run's train/validation assignment of every subject it saw and
  splits only the new subjects (:func:`update_split`), reuses the previous intensity normalisation,
  and refuses a dataset whose label table differs;
- the slices are cut along the previous slice axis at the previous input size, so every previous
  weight fits (:func:`stage_config`);
- the teacher resumes from the previous fine-tuned teacher (LoRA adapters and heads), the students
  from the previous students, each for a fraction of the preset's steps (the preset's ``update``
  section; :func:`tskd.runconfig.update_schedule`);
- the diffusion model is copied (:func:`copy_synthesis`) and its synthetic images are relabelled by
  the updated teacher, unless ``update.reuse_synthesis`` is false;
- ``RUN/lineage.json`` records where the model came from (:func:`lineage`).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tskd.atomic import write_json
from tskd.config import deep_merge, load_yaml
from tskd.data.cases import Case
from tskd.data.labels import LabelTable
from tskd.data.split import subject_split
from tskd.errors import ConfigError, DataError
from tskd.pipeline.run_folder import RunFolder, read_json
from tskd.preprocess.normalization import NormalizationSpec
from tskd.runconfig import PipelineConfig, update_schedule

__all__ = ["PreviousRun", "load_previous_run", "stage_config", "update_split", "lineage", "write_lineage",
           "copy_synthesis", "lineage_line", "LINEAGE_JSON"]

logger = logging.getLogger(__name__)

LINEAGE_JSON = "lineage.json"
#: Files a finished run has; an update needs each of them.
_FINISHED = ("config.yaml", "split.json", "prepared/labels.json", "prepared/index.json", "teacher/stage.json",
             "student/finetune/stage.json", "student/finetune/student.pt", "summary.json")
_LABELLED = ("train", "val")


@dataclass
class PreviousRun:
    """What an update takes from a finished run.

    Attributes:
        run: the previous run folder.
        config: its resolved pipeline config (``config.yaml``).
        split: its case split (``split.json``: ``train``, ``val``, ``unlabelled``).
        labels: its label table (class index = position).
        normalization: the intensity normalisation its slices were prepared with.
        input_size: its slices' side in pixels.
        slice_axis: the numpy axis its volumes were sliced along.
        context_slices: the neighbours on either side its student saw (its input channels).
    """

    run: RunFolder
    config: PipelineConfig
    split: dict[str, list[str]]
    labels: LabelTable
    normalization: NormalizationSpec
    input_size: int
    slice_axis: int
    context_slices: int = 0

    @property
    def root(self) -> Path:
        return self.run.root

    @property
    def student(self) -> Path:
        """The previous TS-KD student (distilled, then fine-tuned)."""
        return self.run.finetune / "student.pt"

    @property
    def reference_student(self) -> Path | None:
        """The previous labels-only student, when that run trained one."""
        path = self.run.reference / "student.pt"
        return path if (self.run.reference / "stage.json").is_file() else None

    @property
    def has_synthesis(self) -> bool:
        return (self.run.synthesis / "stage.json").is_file() and self.config.synthesis.enabled

    def check_labels(self, table: LabelTable, source: str) -> None:
        """Refuse a dataset whose label table differs from the previous run's (the models' classes).

        Raises:
            DataError: naming the dataset and both tables.
        """
        now = [(label.value, label.name) for label in table.labels]
        before = [(label.value, label.name) for label in self.labels.labels]
        if now != before:
            raise DataError(
                f"{source}: the label table {now} differs from the one of the run being updated "
                f"({self.root}: {before}); an update keeps the classes. Use the same labels, or train from "
                "scratch (without --update-from)"
            )


def load_previous_run(path: str | Path, config: PipelineConfig) -> PreviousRun:
    """Read a finished run and check that ``config`` can update it.

    Args:
        path: the previous run folder (``update.from_run``).
        config: the new run's resolved config (before :func:`stage_config`).

    Raises:
        ConfigError: the folder is missing or not a finished run, or the new settings differ from
            the previous ones where the previous weights would not fit (teacher base, architecture,
            input size, LoRA; student; normalisation mode).
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ConfigError(f"update.from_run: {root} is not a folder; give the run folder (--out) of a finished "
                          "'tskd train' run")
    missing = [name for name in _FINISHED if not (root / name).is_file()]
    if missing:
        raise ConfigError(f"update.from_run: {root} is not a finished run (missing {', '.join(missing)}); finish "
                          "it with the same 'tskd train' command first, or update from another run")
    run = RunFolder(root)
    try:
        previous = PipelineConfig.from_dict(load_yaml(run.config), source=str(run.config))
    except ConfigError as exc:
        raise ConfigError(f"update.from_run: {exc}") from None
    _check_same(previous, config, root)
    from tskd.data.slice_dataset import PreparedSlices  # torch: imported once the folder is known to be a run

    prepared = PreparedSlices(run.prepared)
    return PreviousRun(
        run=run, config=previous, split=read_json(run.split)["cases"],
        labels=LabelTable.from_dict(read_json(run.prepared / "labels.json")),
        normalization=prepared.normalization, input_size=prepared.input_size, slice_axis=prepared.slice_axis,
        context_slices=prepared.context_slices,
    )


def _check_same(previous: PipelineConfig, config: PipelineConfig, root: Path) -> None:
    fields = [
        ("teacher.base", previous.teacher.base, config.teacher.base),
        ("teacher.architecture", previous.teacher.architecture, config.teacher.architecture),
        ("teacher.input_size", previous.teacher.model_input_size, config.teacher.model_input_size),
        ("teacher.lora", previous.teacher.lora.to_dict(), config.teacher.lora.to_dict()),
        ("distill.student", previous.distill.student, config.distill.student),
        ("data.prepared.normalization", previous.data.prepared.normalization, config.data.prepared.normalization),
    ]
    for name, before, now in fields:
        if before != now:
            raise ConfigError(
                f"update.from_run: {name} is {now!r} here but {before!r} in {root}; an update starts from that "
                f"run's weights, so {name} must stay the same (set it to {before!r}, or train from scratch "
                "without --update-from)"
            )


def stage_config(config: PipelineConfig, previous: PreviousRun) -> PipelineConfig:
    """The config an update trains with: the short schedule of :func:`tskd.runconfig.update_schedule`,
    the previous run's input size, slice axis and neighbouring slices (``fit_to_data`` off, so every
    weight fits), no
    MAE pre-training (the student starts from the previous one) and, when the diffusion model is
    reused (synthesis on here and there), the previous synthesis settings (those it was made with)."""
    schedule = update_schedule(config)
    changes: dict[str, Any] = {
        "data": {"prepared": {"input_size": previous.input_size, "slice_axis": previous.slice_axis,
                              "context_slices": previous.context_slices, "fit_to_data": False}},
        "distill": {"mae_pretrain": False},
        "update": {"from_run": str(previous.root)},
    }
    for section in ("teacher", "distill", "finetune"):
        engine = getattr(config, section).train
        steps = schedule[section]
        changes = deep_merge(changes, {section: {"train": {
            "max_steps": steps,
            "warmup_steps": min(engine.warmup_steps, steps // 10),
            "validate_every": min(engine.validate_every, steps),
            "checkpoint_every": min(engine.checkpoint_every, steps),
        }}})
    changes["teacher"]["foundation_max_steps"] = None  # the schedule's steps above already count it
    if config.update.reuse_synthesis and previous.has_synthesis and config.synthesis.enabled:
        changes["synthesis"] = previous.config.synthesis.to_dict()
    return PipelineConfig.from_dict(deep_merge(config.to_dict(), changes), source=f"update from {previous.root}")


def update_split(cases: Sequence[Case], previous: dict[str, list[str]], config: PipelineConfig) -> dict[str, list[str]]:
    """The split of an update: every labelled case of a subject the previous run saw keeps that
    subject's side (a validation subject stays in validation, so the comparison stays honest); the
    labelled cases of new subjects are split by subject with ``data.val_fraction`` and ``seed``.

    ``data.max_labelled`` keeps the previous training cases first. Unlabelled cases of training
    subjects (and of new subjects) join ``unlabelled`` when ``data.use_unlabelled`` is on.

    Args:
        cases: the enlarged dataset's cases.
        previous: the previous run's split (``split.json``'s ``cases``).
        config: the update's config.

    Returns:
        ``{"train": [...], "val": [...], "unlabelled": [...]}`` sorted case ids.
    """
    side: dict[str, str] = {}  # case id -> the key it had before
    for key, ids in previous.items():
        for case_id in ids:
            side[case_id] = key
    subject_side: dict[str, str] = {}
    for case in cases:
        key = side.get(case.case_id)
        if key in _LABELLED:
            subject_side.setdefault(case.subject_id, key)
    for case in cases:  # previously unlabelled cases of a subject never in validation count as training
        if side.get(case.case_id) == "unlabelled":
            subject_side.setdefault(case.subject_id, "train")
    train: list[str] = []
    val: list[str] = []
    new_labelled: list[Case] = []
    for case in cases:
        if not case.labelled:
            continue
        known = subject_side.get(case.subject_id)
        if known == "val":
            val.append(case.case_id)
        elif known == "train":
            train.append(case.case_id)
        else:
            new_labelled.append(case)
    if new_labelled:
        # one new subject cannot be split; it trains (validation keeps the previous subjects)
        fraction = config.data.val_fraction if len({c.subject_id for c in new_labelled}) > 1 else 0.0
        new_train, new_val = subject_split(new_labelled, val_fraction=fraction, seed=config.seed,
                                           min_val=1 if fraction > 0 and not val else 0)
        train += [c.case_id for c in new_train]
        val += [c.case_id for c in new_val]
    unused: list[str] = []
    limit = config.data.max_labelled
    if limit is not None and len(train) > limit:
        before = sorted(c for c in train if side.get(c) == "train")
        added = sorted(c for c in train if side.get(c) != "train")
        order = np.random.default_rng(config.seed).permutation(len(added))
        keep = (before + [added[i] for i in order])[:limit]
        unused = sorted(set(train) - set(keep))
        train = keep
    unlabelled: list[str] = []
    if config.data.use_unlabelled:
        val_ids = set(val)
        val_subjects = {c.subject_id for c in cases if c.case_id in val_ids}
        val_subjects |= {s for s, key in subject_side.items() if key == "val"}
        unlabelled = [c.case_id for c in cases if not c.labelled and c.subject_id not in val_subjects]
        unlabelled = sorted(unlabelled + unused)
    return {"train": sorted(train), "val": sorted(val), "unlabelled": unlabelled}


def lineage(previous: PreviousRun, split: dict[str, list[str]]) -> dict[str, Any]:
    """Where an update's model came from.

    Returns:
        ``updated_from`` (the previous run folder), ``added_cases`` (labelled now, not before),
        ``removed_cases`` (labelled before, not now: gone from the dataset or without a label),
        ``labelled_before`` and ``labelled_now`` (labelled training + validation cases).
    """
    before = {c for key in _LABELLED for c in previous.split.get(key, [])}
    now = {c for key in _LABELLED for c in split.get(key, [])}
    return {
        "updated_from": str(previous.root),
        "added_cases": sorted(now - before),
        "removed_cases": sorted(before - now),
        "labelled_before": len(before),
        "labelled_now": len(now),
    }


def lineage_line(record: dict[str, Any]) -> str:
    """One line about a lineage record: ``RUN, 3 cases added (7 -> 10 labelled)``."""
    added, removed = len(record.get("added_cases", [])), len(record.get("removed_cases", []))
    line = f"{record.get('updated_from')}, {added} case{'' if added == 1 else 's'} added"
    if removed:
        line += f", {removed} removed"
    return line + f" ({record.get('labelled_before')} -> {record.get('labelled_now')} labelled)"


def write_lineage(run: RunFolder, record: dict[str, Any]) -> Path:
    """``RUN/lineage.json``."""
    path = run.root / LINEAGE_JSON
    write_json(path, record)
    logger.info("update: from %s, %d case(s) added, %d removed (%d -> %d labelled)", record["updated_from"],
                len(record["added_cases"]), len(record["removed_cases"]), record["labelled_before"],
                record["labelled_now"])
    return path


def copy_synthesis(previous: PreviousRun, run: RunFolder, config: PipelineConfig) -> bool:
    """Copy the previous diffusion model into ``RUN/synthesis`` (without its training checkpoints),
    so the synthesis stage loads it instead of training; True when copied or already there.

    Nothing is copied when ``update.reuse_synthesis`` is false or the previous run had no synthesis.
    The copy goes to a temporary folder renamed into place, so an interrupted copy is redone.
    """
    if not (config.update.reuse_synthesis and previous.has_synthesis and config.synthesis.enabled):
        return False
    if (run.synthesis / "stage.json").is_file():
        return True
    tmp = run.root / ".synthesis.copy"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(previous.run.synthesis, tmp, ignore=shutil.ignore_patterns("checkpoints"))
    if run.synthesis.exists():
        shutil.rmtree(run.synthesis)
    tmp.rename(run.synthesis)
    logger.info("update: reusing the diffusion model of %s", previous.root)
    return True
