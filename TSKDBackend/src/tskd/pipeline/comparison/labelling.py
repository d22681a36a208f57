"""The simulated labelling study of issue 18 (``TSKDBackend/benchmarks/labelling_study.py``).

A user labels a few cases, trains, labels more, trains again. The study replays that on a fully
labelled dataset: the held-out test subjects are drawn as ``tskd benchmark`` draws them
(:func:`tskd.data.split.subject_split` with the run seed), the other labelled cases are the *pool*
whose labels are hidden until a strategy "labels" them. Each round's dataset folder holds the
chosen cases in ``images/`` + ``labels/`` and the rest of the pool in ``unlabelled/`` (hard links).

Arms (one run folder per arm and round):

* ``random``: the next cases drawn at random (seeded), full retrain;
* ``suggested``: the next cases in the order of ``tskd suggest``'s case ranking (computed with
  the previous round's ``suggested`` run), full retrain;
* ``suggested_update``: the ``suggested`` arm's labelled sets, trained as a fast update of its own
  previous round (``update.from_run``, ``tskd train --update-from``); its first round is the
  ``suggested`` arm's first run (nothing to update from yet).

This module holds the parts that deserve tests: round planning, the two choices, the round
dataset folder, the results file (atomic, resumable), the table and the plot.
"""

from __future__ import annotations

import logging
import math
import os
import random
import shutil
from pathlib import Path
from typing import Any, Iterable, Sequence

from tskd.atomic import write_json
from tskd.data.cases import Case
from tskd.errors import ConfigError
from tskd.pipeline.run_folder import read_json

__all__ = ["ARMS", "plan_rounds", "initial_cases", "choose_random", "choose_suggested", "write_round_dataset",
           "StudyResults", "format_table", "plot_study"]

logger = logging.getLogger(__name__)

#: The study's arms, in table order.
ARMS = ("random", "suggested", "suggested_update")


def plan_rounds(counts: Sequence[int], pool_size: int) -> list[int]:
    """The labelled counts per round, checked: positive, strictly increasing, within the pool.

    Raises:
        ValueError: an empty, non-increasing or too large list (says which count and why).
    """
    counts = [int(c) for c in counts]
    if not counts:
        raise ValueError("--rounds needs at least one labelled count, e.g. 10,20,40,80")
    if counts[0] < 1:
        raise ValueError(f"--rounds: the first count must be at least 1, got {counts[0]}")
    for before, after in zip(counts, counts[1:]):
        if after <= before:
            raise ValueError(f"--rounds must increase, got {before} then {after}")
    if counts[-1] > pool_size:
        raise ValueError(f"--rounds: {counts[-1]} labelled cases asked for, but the pool holds only {pool_size} "
                         "cases after holding out the test subjects; lower the last count or --test-fraction")
    return counts


def initial_cases(pool: Sequence[str], count: int, seed: int) -> list[str]:
    """The first round's labelled cases (shared by every arm): ``count`` cases of ``pool`` drawn with ``seed``."""
    return choose_random(pool, [], count, seed=seed, round_index=0)


def choose_random(pool: Sequence[str], labelled: Iterable[str], count: int, *, seed: int,
                  round_index: int) -> list[str]:
    """``count`` not yet labelled cases of ``pool``, drawn at random; the same arguments give the
    same cases (the draw depends on the seed, the round and the sorted remaining pool only)."""
    taken = set(labelled)
    remaining = sorted(c for c in pool if c not in taken)
    if count > len(remaining):
        raise ValueError(f"{count} cases to add but only {len(remaining)} left unlabelled in the pool")
    return random.Random(f"{seed}:{round_index}").sample(remaining, count)


def choose_suggested(ranking: Sequence[str], labelled: Iterable[str], count: int) -> list[str]:
    """The first ``count`` cases of ``ranking`` (most worth labelling first) not yet labelled.

    Raises:
        ValueError: the ranking holds fewer new cases than ``count``.
    """
    taken = set(labelled)
    chosen: list[str] = []
    for case_id in ranking:
        if case_id not in taken and case_id not in chosen:
            chosen.append(case_id)
            if len(chosen) == count:
                return chosen
    raise ValueError(f"the suggestion ranking holds {len(chosen)} new cases, {count} were asked for")


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:  # another file system: a copy (the work folder should be beside the data)
        shutil.copy2(source, target)


def write_round_dataset(cases: Sequence[Case], labelled: Iterable[str], pool: Iterable[str], out: Path) -> Path:
    """A dataset folder: ``images/`` + ``labels/`` for ``labelled``, ``unlabelled/`` for the rest of
    ``pool`` (hard links to the original files). Built under a temporary name, then renamed; an
    existing complete folder is kept.

    Raises:
        ValueError: a case id that is not in ``cases`` or has no label.
    """
    out = Path(out)
    if (out / "study_round.json").is_file():
        return out
    by_id = {c.case_id: c for c in cases}
    labelled = list(labelled)
    rest = sorted(set(pool) - set(labelled))
    unknown = [c for c in labelled + rest if c not in by_id]
    if unknown:
        raise ValueError(f"case ids not in the dataset: {', '.join(unknown[:5])}")
    work = out.with_name(f".{out.name}.tmp")
    if work.exists():
        shutil.rmtree(work)
    for case_id in labelled:
        case = by_id[case_id]
        if case.label_path is None:
            raise ValueError(f"case {case_id} has no label; the pool must hold labelled cases only")
        image = Path(case.image_path)
        _link(image, work / "images" / image.name)
        _link(Path(case.label_path), work / "labels" / image.name)  # the same name pairs them
    for case_id in rest:
        image = Path(by_id[case_id].image_path)
        _link(image, work / "unlabelled" / image.name)
    write_json(work / "study_round.json", {"labelled": labelled, "unlabelled": rest})
    if out.exists():
        shutil.rmtree(out)
    os.replace(work, out)
    return out


def _extends(key: str, before: dict[str, Any], after: dict[str, Any]) -> bool:
    """True when ``after`` only adds rounds at the end of ``before``'s (the earlier rounds' cases
    and runs stay valid, so a finished study can be continued)."""
    if key != "rounds" or not isinstance(before.get(key), list):
        return False
    old, new = before[key], list(after[key])
    return len(new) > len(old) and new[:len(old)] == old


class StudyResults:
    """The study's JSON file: settings, split, the cases each arm labelled per round, and one
    record per finished (arm, round). Every change is written at once, atomically."""

    def __init__(self, path: Path, settings: dict[str, Any]):
        self.path = Path(path)
        if self.path.is_file():
            saved = read_json(self.path)
            before = saved.get("settings", {})
            differ = sorted(k for k in settings if before.get(k) != settings[k] and not _extends(k, before, settings))
            if differ:
                raise ConfigError(f"{self.path} holds a study run with other settings ({', '.join(differ)}); "
                                  "run again with the same settings to resume it (more rounds may be added at "
                                  "the end), or give another --results file")
            saved["settings"] = dict(before, **settings)
            self.data = saved
        else:
            self.data = {"settings": settings, "split": None, "labelled": {}, "records": []}

    def save(self) -> None:
        write_json(self.path, self.data)

    def labelled(self, arm: str, round_index: int) -> list[str] | None:
        """The cases ``arm`` had labelled in round ``round_index``, or None when not chosen yet."""
        return self.data["labelled"].get(arm, {}).get(str(round_index))

    def set_labelled(self, arm: str, round_index: int, cases: list[str]) -> None:
        self.data["labelled"].setdefault(arm, {})[str(round_index)] = list(cases)
        self.save()

    def record(self, arm: str, round_index: int) -> dict[str, Any] | None:
        """The finished record of ``arm`` in round ``round_index``, or None (then it must run)."""
        for entry in self.data["records"]:
            if entry["arm"] == arm and entry["round"] == round_index:
                return entry
        return None

    def add_record(self, entry: dict[str, Any]) -> None:
        self.data["records"] = [e for e in self.data["records"]
                                if not (e["arm"] == entry["arm"] and e["round"] == entry["round"])] + [entry]
        self.data["records"].sort(key=lambda e: (e["round"], ARMS.index(e["arm"]) if e["arm"] in ARMS else 99))
        self.save()


def _cell(value: Any, digits: int = 3) -> str:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return f"{value:.{digits}f}"
    return "-"


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """A markdown table: one row per round and arm (labelled, test Dice ± sd, wall minutes, steps)."""
    lines = ["| round | labelled | arm | test Dice | wall min | steps |", "| --- | --- | --- | --- | --- | --- |"]
    for e in sorted(records, key=lambda e: (e["round"], ARMS.index(e["arm"]) if e["arm"] in ARMS else 99)):
        dice = f"{_cell(e.get('test_dice'))} ± {_cell(e.get('dice_sd'))}"
        wall = e.get("wall_s")
        minutes = _cell(wall / 60.0, 1) if isinstance(wall, (int, float)) else "-"
        lines.append(f"| {e['round']} | {e['labelled']} | {e['arm']} | {dice} | {minutes} | {e.get('steps', '-')} |")
    return "\n".join(lines)


def plot_study(records: Sequence[dict[str, Any]], path: Path, *, title: str = "") -> Path:
    """Test Dice against labelled count, one line per arm (PNG, matplotlib's Agg canvas, no pyplot
    state, as :func:`tskd.pipeline.comparison.plot.plot_results`)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.5, 4.5), dpi=120)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    for i, arm in enumerate(ARMS):
        points = sorted((e["labelled"], e["test_dice"], e.get("dice_sd") or 0.0) for e in records
                        if e["arm"] == arm and isinstance(e.get("test_dice"), (int, float)))
        if points:
            x, y, sd = zip(*points)
            axes.errorbar(x, y, yerr=sd, marker="o", capsize=3, color=f"C{i}", label=arm)
    axes.set_xlabel("labelled cases")
    axes.set_ylabel("test Dice (± sd over test cases)")
    axes.set_ylim(0, 1.05)
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title, fontsize=9)
    if records:
        axes.legend(loc="lower right", fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
