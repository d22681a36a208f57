"""What to label next for a run and a dataset (``tskd suggest``).

:func:`suggest` loads the run's student (its exported package, like ``tskd predict``) and, when
the run has a trained teacher, the teacher (like ``tskd teacher predict``); scores every slice of
every unlabelled case (:func:`tskd.suggest.scoring.score_volume`); and picks the slices to label
next (:func:`tskd.suggest.select.select`). Models and images are read through the inference and
data layers; torch is imported only when the teacher (or ``backend="torch"``) is used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from tskd.atomic import write_json
from tskd.data.cases import Case
from tskd.errors import CheckpointError, DataError, TSKDError
from tskd.runtime import METADATA_NAME, SliceModel
from tskd.suggest.config import SuggestConfig
from tskd.suggest.scoring import score_volume, teacher_matches
from tskd.suggest.select import CaseScore, SliceCandidate, Suggestion, rank_cases, select

__all__ = [
    "FORMAT_NAME",
    "SuggestResult",
    "load_student",
    "load_teacher",
    "list_cases",
    "score_cases",
    "suggest",
    "format_suggestions",
    "write_suggestions",
]

logger = logging.getLogger(__name__)

FORMAT_NAME = "tskd-suggestions"
FORMAT_VERSION = 1
PathLike = Union[str, Path]


@dataclass
class SuggestResult:
    """The ranked suggestions of one run on one dataset.

    Attributes:
        model: the run (or package) the student came from.
        data: the dataset.
        teacher_used: whether the disagreement term took part.
        teacher_note: why the teacher was or was not used.
        config: the settings used.
        suggestions: the slices to label next, rank 1 first.
        cases: every scored case, most worth labelling first.
        skipped: ``{"case", "error"}`` for each case that could not be scored.
        seconds: time spent scoring.
    """

    model: str
    data: str
    teacher_used: bool
    teacher_note: str
    config: SuggestConfig
    suggestions: list[Suggestion]
    cases: list[CaseScore]
    skipped: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "model": self.model,
            "data": self.data,
            "teacher": {"used": self.teacher_used, "note": self.teacher_note},
            "config": self.config.to_dict(),
            "suggestions": [s.to_dict() for s in self.suggestions],
            "cases": [c.to_dict() for c in self.cases],
            "skipped": list(self.skipped),
            "seconds": round(self.seconds, 3),
        }


def load_student(model: PathLike, *, backend: str = "onnx", threads: Optional[int] = None,
                 device: Optional[str] = None) -> SliceModel:
    """The student of a run folder (its ``package/``), a package folder or a ``.tskd.zip``.

    Raises:
        CheckpointError: the path does not exist or holds no trained student.
    """
    from tskd.inference import load_slice_model

    path = Path(model).expanduser()
    if not path.exists():
        raise CheckpointError(f"{path}: not found; give a run folder ('tskd train --out RUN'), a student package "
                              "folder or a .tskd.zip")
    if path.is_dir() and not (path / METADATA_NAME).is_file() and not (path / "package" / METADATA_NAME).is_file():
        raise CheckpointError(f"{path}: holds no trained student (no {METADATA_NAME} in it or in package/); "
                              "suggestions need a run whose training finished, or a student package")
    return load_slice_model(path, backend=backend, threads=threads, device=device)


def load_teacher(model: PathLike, *, device: str = "cpu", base: Optional[PathLike] = None
                 ) -> tuple[Optional[SliceModel], str]:
    """The run's trained teacher, or None and the reason it cannot be used.

    Args:
        model: the run folder (a package or zip has no teacher).
        device: ``cpu``, ``cuda`` or ``auto``.
        base: the foundation checkpoint when it moved since training.

    Returns:
        ``(teacher or None, note)``; a teacher that cannot be loaded (its foundation checkpoint
        moved, say) is reported in the note and left out, so the student's term still ranks.
    """
    root = Path(model).expanduser()
    if not root.is_dir() or (root / METADATA_NAME).is_file():
        return None, f"{root} is a student package, not a run folder: no teacher (student entropy only)"
    folder = root / "teacher"
    if not folder.is_dir():  # before importing torch (tskd.teacher): a suggestions worker starts in a second
        return None, f"no trained teacher in {folder} (student entropy only)"
    from tskd.teacher.storage import TEACHER_JSON

    if not (folder / TEACHER_JSON).is_file():
        return None, f"no trained teacher in {folder} (student entropy only)"
    from tskd.inference.teacher_model import load_teacher_slice_model

    try:
        teacher = load_teacher_slice_model(folder, base=base, device=device)
    except TSKDError as exc:
        logger.warning("the teacher of %s is left out: %s", model, exc)
        return None, f"teacher left out: {exc}"
    return teacher, f"teacher of {folder} (disagreement weight in the score)"


def list_cases(data: PathLike, *, include_labelled: bool = False) -> list[Case]:
    """The cases to score: a dataset's unlabelled cases (all with ``include_labelled``), or every
    image of a plain folder of images (or one image file).

    Raises:
        DataError: not found, no images, or nothing unlabelled to suggest.
    """
    from tskd.data.dataset import build_dataset

    path = Path(data).expanduser()
    if not path.exists():
        raise DataError(f"{path}: not found; give a dataset folder, a manifest, or a folder of images")
    try:
        dataset = build_dataset(path)
    except DataError as exc:
        cases = _plain_images(path, exc)
    else:
        cases = dataset.cases
        for problem in dataset.errors:  # files left out: unreadable, empty, several channels...
            logger.info("%s", problem)
        if dataset.errors:
            logger.warning("%d file(s) of %s were left out; 'tskd data check %s' lists why",
                           len(dataset.errors), path, path)
    if not cases:
        raise DataError(f"{path}: holds no usable images to score; run 'tskd data check {path}' to see why")
    if include_labelled:
        return cases
    unlabelled = [case for case in cases if not case.labelled]
    if not unlabelled:
        raise DataError(f"{path}: all {len(cases)} cases are labelled, so there is nothing to suggest; add "
                        "unlabelled images (an unlabelled/ folder, or manifest rows without a label), or pass "
                        "--include-labelled to rank the labelled ones too")
    return unlabelled


def _plain_images(path: Path, dataset_error: DataError) -> list[Case]:
    from tskd.data.discover import stem_of
    from tskd.inference import list_inputs

    try:
        images = list_inputs(path)
    except DataError:
        raise DataError(f"{path}: holds no images to score ({dataset_error})") from None
    return [Case(stem_of(image), stem_of(image), image) for image in images]


def score_cases(
    student: SliceModel,
    cases: list[Case],
    *,
    teacher: Optional[SliceModel] = None,
    config: Optional[SuggestConfig] = None,
    on_case: Optional[Callable[[int, int, str], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
) -> tuple[list[SliceCandidate], list[dict[str, str]]]:
    """Score every slice of every case.

    Args:
        student, teacher: the models (see :func:`tskd.suggest.scoring.score_volume`).
        cases: what to score (:func:`list_cases`).
        config: scoring settings.
        on_case: called as ``on_case(position, total, case_id)`` after each case (1-based).
        cancel: polled before each batch.

    Returns:
        ``(candidates, skipped)``: one candidate per slice; ``{"case", "error"}`` per unreadable case.
    """
    from tskd.data.image import read_image

    config = config or SuggestConfig()
    candidates: list[SliceCandidate] = []
    skipped: list[dict[str, str]] = []
    for position, case in enumerate(cases, start=1):
        try:
            image = read_image(case.image_path, kind="image")
        except TSKDError as exc:
            logger.warning("case %s is skipped: %s", case.case_id, exc)
            skipped.append({"case": case.case_id, "error": str(exc)})
        else:
            scores = score_volume(student, image.array, teacher=teacher, config=config, cancel=cancel)
            for index in range(scores.num_slices):
                candidates.append(SliceCandidate(
                    case.case_id, index, float(scores.score[index]), float(scores.entropy[index]),
                    None if scores.disagreement is None else float(scores.disagreement[index]), scores.axis))
        if on_case is not None:
            on_case(position, len(cases), case.case_id)
    return candidates, skipped


def suggest(
    model: PathLike,
    data: PathLike,
    *,
    config: Optional[SuggestConfig] = None,
    use_teacher: bool = True,
    include_labelled: bool = False,
    backend: str = "onnx",
    threads: Optional[int] = None,
    device: str = "cpu",
    on_case: Optional[Callable[[int, int, str], None]] = None,
    cancel: Optional[Callable[[], bool]] = None,
) -> SuggestResult:
    """Rank the slices (and cases) of ``data`` most worth labelling next for the run ``model``.

    Args:
        model: a run folder (student from ``package/``, teacher from ``teacher/``), or a package
            folder / ``.tskd.zip`` (student only).
        data: a dataset folder or manifest (its unlabelled cases; all with ``include_labelled``),
            or a folder of images / one image.
        config: settings (default :class:`SuggestConfig`).
        use_teacher: add the teacher-student disagreement when the run has a teacher.
        include_labelled: score the dataset's labelled cases too.
        backend: the student's backend, ``onnx`` (default) or ``torch``.
        threads: CPU threads for the student.
        device: ``cpu`` (default) or ``cuda`` for both models.
        on_case, cancel: see :func:`score_cases`.

    Raises:
        CheckpointError: no trained student at ``model``.
        DataError: no images to score, nothing unlabelled, or no case could be read.
    """
    config = config or SuggestConfig()
    start = time.perf_counter()
    cases = list_cases(data, include_labelled=include_labelled)  # cheap: headers only
    student = load_student(model, backend=backend, threads=threads, device=device)
    teacher, note = (None, "not used (--no-teacher)")
    if use_teacher:
        teacher, note = load_teacher(model, device=device)
    if teacher is not None:
        problem = teacher_matches(student, teacher)
        if problem:
            logger.warning("the teacher is left out: %s", problem)
            teacher, note = None, f"teacher left out: {problem}"
    candidates, skipped = score_cases(student, cases, teacher=teacher, config=config, on_case=on_case, cancel=cancel)
    if not candidates:
        raise DataError(f"{data}: none of the {len(cases)} cases could be read: " + "; ".join(
            f"{s['case']}: {s['error']}" for s in skipped[:3]))
    return SuggestResult(
        model=str(model), data=str(data), teacher_used=teacher is not None, teacher_note=note, config=config,
        suggestions=select(candidates, config), cases=rank_cases(candidates, config), skipped=skipped,
        seconds=time.perf_counter() - start,
    )


def format_suggestions(result: SuggestResult, *, cases: int = 5) -> str:
    """The ranked table (rank, case, slice, score, why) and the best ``cases`` cases."""
    rows = [("rank", "case", "slice", "score", "why")]
    rows += [(str(s.rank), s.candidate.case_id, str(s.candidate.slice_index), f"{s.candidate.score:.3f}", s.why)
             for s in result.suggestions]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4] for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 3)
    axis = result.suggestions[0].candidate.axis if result.suggestions else 0
    lines.append("")
    lines.append(f"slices are numpy indices along axis {axis} of each (k, j, i) image; teacher: {result.teacher_note}")
    if result.cases:
        best = ", ".join(f"{c.case_id} {c.score:.3f}" for c in result.cases[:cases])
        lines.append(f"cases (mean of their top {result.config.case_top_slices} slices): {best}")
    if result.skipped:
        lines.append(f"skipped {len(result.skipped)} unreadable case(s): " + ", ".join(s["case"] for s in result.skipped))
    return "\n".join(lines)


def write_suggestions(result: SuggestResult, path: PathLike) -> Path:
    """Write :meth:`SuggestResult.to_dict` as JSON, atomically."""
    return write_json(path, result.to_dict())
