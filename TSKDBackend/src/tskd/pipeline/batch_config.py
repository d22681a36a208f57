"""The task list of ``tskd batch``: a YAML file naming many datasets/tasks, checked as a whole
before anything runs (see docs/distributed.md for the format).

Every task becomes a :class:`BatchTask` (a typed config) and is resolved into its full
:class:`~tskd.runconfig.PipelineConfig` up front, so a typo in the fifth task's overrides is
reported before the first task trains. Relative paths are relative to the YAML file's folder.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from tskd.config import ConfigBase, deep_merge, load_yaml
from tskd.errors import ConfigError
from tskd.runconfig import DEFAULT_PRESET, PipelineConfig, resolve_config

__all__ = ["BatchTask", "BatchFile", "PlannedTask", "load_batch_file"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass
class BatchTask(ConfigBase):
    """One task of a batch: ``tskd train`` on one dataset.

    Args:
        name: unique name (letters, digits, ``-``, ``_``, ``.``); the run folder's name under
            ``output_root``.
        data: dataset folder or manifest.
        out: run folder (default: ``output_root/name``).
        preset: named settings (default: the CLI's default preset).
        config: overrides of the preset, as in a ``--config`` file.
        config_file: a YAML file of overrides (applied before ``config``).
        base: the teacher's foundation checkpoint (``none``: no foundation weights).
        subject_pattern: regular expression whose first group is the subject id of a case name.
        max_steps, input_size, seed: as the ``tskd train`` options of the same names.
        nproc: processes for this task (``tskd train --nproc``; on GPUs the number of GPUs).
    """

    name: str = ""
    data: str = ""
    out: Optional[str] = None
    preset: str = DEFAULT_PRESET
    config: dict[str, Any] = field(default_factory=dict)
    config_file: Optional[str] = None
    base: Optional[str] = None
    subject_pattern: Optional[str] = None
    max_steps: Optional[int] = None
    input_size: Optional[int] = None
    seed: Optional[int] = None
    nproc: Optional[int] = None


@dataclass
class BatchFile(ConfigBase):
    """The top level of a batch file.

    Args:
        output_root: where run folders go (``output_root/NAME``) and where the batch summary is written.
        defaults: task fields applied to every task (a task's own fields win; ``config`` mappings merge).
        tasks: the tasks, in the order they run.
    """

    output_root: Optional[str] = None
    defaults: dict[str, Any] = field(default_factory=dict)
    tasks: list[Any] = field(default_factory=list)


@dataclass
class PlannedTask:
    """A checked task, ready to run.

    Attributes:
        task: the task's fields (paths made absolute).
        config: the resolved pipeline config the task's run folder will hold.
        out: the run folder.
    """

    task: BatchTask
    config: PipelineConfig
    out: Path

    @property
    def name(self) -> str:
        return self.task.name


def _is_weights_name(value: str, folder: Path) -> bool:
    """``auto``, a catalog name or an imported name in the weights cache (and not a file beside the batch file)."""
    from tskd.foundation.cache import WeightsCache
    from tskd.foundation.resolve import is_weights_name

    if (folder / Path(value).expanduser()).exists():
        return False
    return is_weights_name(value) or value in WeightsCache().records()


def _absolute(value: str | None, folder: Path) -> str | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (folder / path).resolve())


def load_batch_file(path: str | Path) -> tuple[list[PlannedTask], Path]:
    """Read and check a batch file.

    Returns:
        the planned tasks, and the folder for the batch summary (``output_root``, else the file's folder).

    Raises:
        ConfigError: the file or a task is invalid; the message names the task and the field.
    """
    path = Path(path)
    batch = BatchFile.from_dict(load_yaml(path), source=str(path))
    folder = path.resolve().parent
    root = Path(_absolute(batch.output_root, folder)) if batch.output_root else None
    if not batch.tasks:
        raise ConfigError(f"{path}: 'tasks' lists no task; add at least one with 'name' and 'data'")
    planned: list[PlannedTask] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(batch.tasks, start=1):
        label = f"task {number}"
        if not isinstance(entry, dict):
            raise ConfigError(f"{path}: {label}: expected a mapping of task fields, got {entry!r}")
        if isinstance(entry.get("name"), str):
            label += f" ({entry['name']!r})"
        where = f"{path}: {label}"
        merged = deep_merge(batch.defaults, entry)
        task = BatchTask.from_dict(merged, source=where)
        planned.append(_plan(task, where, folder, root, seen, number))
    outs: dict[Path, str] = {}
    for item in planned:
        if item.out in outs:
            raise ConfigError(f"{path}: tasks {outs[item.out]!r} and {item.name!r} share the run folder {item.out}; "
                              "give one of them another 'out'")
        outs[item.out] = item.name
    return planned, root or folder


def _plan(task: BatchTask, where: str, folder: Path, root: Path | None, seen: dict[str, int],
          number: int) -> PlannedTask:
    if not task.name:
        raise ConfigError(f"{where}: field 'name' is missing; every task needs a unique name")
    if not _NAME.match(task.name):
        raise ConfigError(f"{where}: field 'name': {task.name!r} may hold only letters, digits, '-', '_' and '.'")
    if task.name in seen:
        raise ConfigError(f"{where}: field 'name': {task.name!r} is already the name of task {seen[task.name]}")
    seen[task.name] = number
    if not task.data:
        raise ConfigError(f"{where}: field 'data' is missing; give the dataset folder or manifest")
    if task.nproc is not None and task.nproc < 1:
        raise ConfigError(f"{where}: field 'nproc' must be at least 1, got {task.nproc}")
    if task.out is None and root is None:
        raise ConfigError(f"{where}: field 'out' is missing and the file has no 'output_root'; give one of them")
    if task.subject_pattern is not None:
        try:
            re.compile(task.subject_pattern)
        except re.error as exc:
            raise ConfigError(f"{where}: field 'subject_pattern': not a regular expression ({exc})") from None
    base = task.base if task.base in (None, "none") or _is_weights_name(task.base, folder) \
        else _absolute(task.base, folder)
    task = BatchTask.from_dict({
        **task.to_dict(),
        "data": _absolute(task.data, folder),
        "out": _absolute(task.out, folder) if task.out else str(root / task.name),  # type: ignore[operator]
        "config_file": _absolute(task.config_file, folder),
        "base": base,
    }, source=where)
    overrides: dict[str, Any] = deep_merge(task.config, {"data": {"subject_pattern": task.subject_pattern}}) \
        if task.subject_pattern is not None else dict(task.config)
    try:
        config = resolve_config(preset=task.preset, config_file=task.config_file, overrides=overrides,
                                max_steps=task.max_steps, input_size=task.input_size, seed=task.seed, base=base)
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return PlannedTask(task=task, config=config, out=Path(task.out))  # type: ignore[arg-type]
