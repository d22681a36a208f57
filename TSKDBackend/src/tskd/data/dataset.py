"""Datasets: the labelled (and unlabelled) cases of a folder or manifest, ready to read.

:func:`load_dataset` lists the files, pairs images with labels and reads only headers (sizes,
spacing, segment names), so it is cheap. Problems are sorted in two kinds:

- a **case** problem (``Problem.severity == "error"``) leaves that case out: unreadable, empty or
  multi-channel image, label without image, label that does not overlay its image, label values
  that the label table does not declare (found when pixels are read);
- a **dataset** problem makes the whole dataset unusable and :func:`load_dataset` raises
  :class:`~tskd.errors.DataError`: missing folder, no known layout, 2D and 3D images mixed, or no
  labelled case left.

Warnings (extra files skipped, images without labels used as unlabelled, no pixel size for 2D
pictures) never leave a usable case out. :func:`tskd.data.check.check_dataset` reads every pixel.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from tskd.data.align import align_label_to_image, label_mismatch
from tskd.data.cases import ERROR, WARNING, Case, Problem, message_without_path
from tskd.data.discover import Candidate, Discovery, discover_folder
from tskd.data.folding import LabelFold, mask_values, plan_fold, unique_values
from tskd.data.image import Geometry, Image, image_suffix
from tskd.data.labels import Label, LabelTable
from tskd.data.manifest import read_manifest
from tskd.data.readers import (
    RASTER_SUFFIXES,
    ImageInfo,
    parallel_map,
    read_image_info,
    read_sitk,
    read_sitk_image,
    to_scalar_image,
)
from tskd.data.seg_nrrd import match_segments
from tskd.data.subjects import assign_subjects
from tskd.errors import DataError

__all__ = ["Case", "Problem", "Dataset", "build_dataset", "dataset_path", "load_dataset"]

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class _Headers:
    image: ImageInfo
    label: ImageInfo | None


@dataclasses.dataclass
class _LabelScan:
    """Raw content of one label file: values (integer maps) or raw pixels to fold (masks)."""

    values: set[int] | None = None
    grey: set[int] = dataclasses.field(default_factory=set)
    colors: set[tuple[int, int, int]] = dataclasses.field(default_factory=set)
    error: str | None = None


class Dataset:
    """The usable cases of a dataset and what is known about them.

    Build one with :func:`load_dataset` (or :func:`build_dataset` to inspect an unusable one).

    Attributes:
        root: the dataset folder (the manifest's folder for a manifest).
        layout: ``"folders"``, ``"msd"`` or ``"manifest"``.
        cases: usable cases (labelled and unlabelled), sorted by case id.
        dimension: 2 or 3 (0 when no case is usable).
        problems: everything found wrong or odd, in the order found.
        fatal: reasons the whole dataset cannot be used (empty when usable).
        excluded: case id -> why it was left out.
    """

    def __init__(
        self,
        *,
        root: Path,
        layout: str,
        cases: list[Case],
        dimension: int,
        problems: list[Problem],
        headers: dict[str, _Headers],
        declared_table: LabelTable | None = None,
        segment_table: LabelTable | None = None,
        segment_remaps: dict[str, dict[int, int]] | None = None,
        subject_pattern: str | None = None,
        spacing_source: str | None = None,
        fatal: list[str] | None = None,
        excluded: dict[str, str] | None = None,
    ) -> None:
        self.root = root
        self.layout = layout
        self.cases = sorted(cases, key=lambda c: c.case_id)
        self.dimension = dimension
        self.problems = problems
        self.fatal = fatal or []
        self.excluded = excluded or {}
        self.subject_pattern = subject_pattern
        self.spacing_source = spacing_source
        self._headers = headers
        self._declared = declared_table
        self._segment_table = segment_table
        self._remaps = segment_remaps or {}
        self._label_table: LabelTable | None = declared_table
        self._fold: LabelFold | None = None
        self._case_values: dict[str, set[int]] | None = None
        self._scan_lock = threading.RLock()

    # -- views ---------------------------------------------------------------------------------
    @property
    def labelled(self) -> list[Case]:
        return [c for c in self.cases if c.labelled]

    @property
    def unlabelled(self) -> list[Case]:
        return [c for c in self.cases if not c.labelled]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == ERROR]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == WARNING]

    @property
    def usable(self) -> bool:
        return not self.fatal and bool(self.labelled)

    @property
    def declared_label_table(self) -> LabelTable | None:
        """The table a ``dataset.json``/``labels.json``/manifest declared, if any."""
        return self._declared

    @property
    def label_table(self) -> LabelTable:
        """The label table; when no file declares one, it is made from the values found in the
        labels (reading every label once, see :meth:`scan_labels`)."""
        if self._label_table is None:
            self.scan_labels()
        assert self._label_table is not None
        return self._label_table

    def case(self, case_id: str) -> Case:
        for case in self.cases:
            if case.case_id == case_id:
                return case
        raise KeyError(f"no case {case_id!r} in {self.root}")

    def geometry(self, case: Case) -> Geometry:
        """The image geometry from its header, with the case's spacing override applied."""
        return _override(self._headers[case.case_id].image.geometry, case.spacing_override)

    def header(self, case: Case) -> ImageInfo:
        """The image's header as read at load time."""
        return self._headers[case.case_id].image

    def exclude(self, case: Case, message: str, path: Path | None = None) -> None:
        """Leave ``case`` out with an error ``message`` (used by checks that read pixels)."""
        self.cases = [c for c in self.cases if c.case_id != case.case_id]
        self.excluded[case.case_id] = message
        self.problems.append(Problem(ERROR, path or case.image_path, message, case.case_id))
        if self._case_values is not None:
            self._case_values.pop(case.case_id, None)
        if not self.labelled and "no labelled case is usable" not in " ".join(self.fatal):
            self.fatal.append("no labelled case is usable")

    # -- reading -------------------------------------------------------------------------------
    def read_case(self, case: Case) -> tuple[Image, Image | None]:
        """Read a case's image and label on the same grid.

        Applies the spacing override, puts a cropped ``.seg.nrrd`` back on the image's grid,
        renumbers segments by name to the label table's values, and folds picture masks.

        Returns:
            ``(image, label)``; ``label`` is None for an unlabelled case.

        Raises:
            DataError: unreadable file, label not on the image's grid, undeclared label values.
        """
        image = read_sitk_image(case.image_path, "image")
        label = self.read_label(case, image.geometry) if case.label_path else None
        if case.spacing_override:
            geometry = _override(image.geometry, case.spacing_override)
            image = Image(image.array, geometry, image.path, image.metadata)
            if label is not None:
                label = Image(label.array, geometry, label.path, label.metadata)
        return image, label

    def read_label(self, case: Case, image_geometry: Geometry | None = None) -> Image:
        """Read a case's label on its image's grid (file geometry, before spacing overrides)."""
        if case.label_path is None:
            raise ValueError(f"case {case.case_id!r} has no label")
        path = case.label_path
        raw, metadata = read_sitk(path)
        headers = self._headers.get(case.case_id)
        info = headers.label if headers else None
        segmentation = bool(info and info.is_segmentation)
        fold = None
        if _needs_fold(path, raw.GetNumberOfComponentsPerPixel(), segmentation):
            fold = self._fold
            if fold is None:
                grey, colors = mask_values(_array_view(raw), channels=raw.GetNumberOfComponentsPerPixel() > 1)
                fold = plan_fold(grey, colors, self._declared)
                if fold.guessed:  # colours of this file alone do not fix the mapping: decide dataset-wide
                    self.scan_labels()
                    fold = self._fold or fold
        label = to_scalar_image(raw, metadata, path, "label", label_table=self._declared, fold=fold)
        label = self._remap(case, label)
        target = image_geometry or (headers.image.geometry if headers else None)
        if target is not None:
            label = align_label_to_image(label, target, allow_subregion=segmentation)
        if self._declared is not None:
            undeclared = self._declared.check_values(unique_values(label.array))
            if undeclared:
                raise DataError(f"{path}: {_undeclared_message(undeclared, self._declared)}")
        return label

    def _remap(self, case: Case, label: Image) -> Image:
        remap = self._remaps.get(case.case_id)
        if not remap:
            return label
        fits = max(remap.values()) <= np.iinfo(label.array.dtype).max
        out = label.array.copy() if fits else label.array.astype(np.int32)
        for old, new in remap.items():
            out[label.array == old] = new
        segments = [{**s, "label_value": remap.get(s["label_value"], s["label_value"])}
                    for s in label.metadata.get("segments", [])]
        return Image(out, label.geometry, label.path, {**label.metadata, "segments": segments})

    def _scan_one(self, case: Case) -> _LabelScan:
        assert case.label_path is not None
        try:
            raw, metadata = read_sitk(case.label_path)
            segmentation = self._headers[case.case_id].label.is_segmentation  # type: ignore[union-attr]
            channels = raw.GetNumberOfComponentsPerPixel() > 1
            if _needs_fold(case.label_path, raw.GetNumberOfComponentsPerPixel(), segmentation):
                grey, colors = mask_values(_array_view(raw), channels=channels)
                return _LabelScan(grey=grey, colors=colors)
            label = self._remap(case, to_scalar_image(raw, metadata, case.label_path, "label"))
            image_geometry = self._headers[case.case_id].image.geometry
            label = align_label_to_image(label, image_geometry, allow_subregion=segmentation)
            return _LabelScan(values=unique_values(label.array))
        except DataError as exc:
            return _LabelScan(error=message_without_path(str(exc), case.label_path))

    def scan_labels(self, workers: int | None = None) -> dict[str, set[int]]:
        """Read every label once: label values per case, the dataset-wide mask fold, the label table.

        Cases whose label cannot be read, does not fit its image or holds undeclared values are
        left out (see :meth:`exclude`).

        Returns:
            case id -> set of label values (after folding and renumbering).
        """
        with self._scan_lock:
            if self._case_values is None:
                self._case_values = self._scan(workers)
        return self._case_values

    def _scan(self, workers: int | None) -> dict[str, set[int]]:
        cases = self.labelled
        scans = dict(zip((c.case_id for c in cases), parallel_map(self._scan_one, cases, workers)))
        grey: set[int] = set()
        colors: set[tuple[int, int, int]] = set()
        for scan in scans.values():
            if scan.values is None and scan.error is None:
                grey |= scan.grey
                colors |= scan.colors
        self._fold = plan_fold(grey, colors, self._declared) if (grey or colors) else LabelFold()
        values: dict[str, set[int]] = {}
        for case in cases:
            scan = scans[case.case_id]
            if scan.error is not None:
                self.exclude(case, scan.error + " (case left out)", case.label_path)
                continue
            found = scan.values if scan.values is not None else self._fold.map_values(scan.grey, scan.colors)
            if self._declared is not None:
                undeclared = self._declared.check_values(found)
                if undeclared:
                    message = _undeclared_message(undeclared, self._declared) + " (case left out)"
                    self.exclude(case, message, case.label_path)
                    continue
            values[case.case_id] = found
        if self._label_table is None:
            found_all = set().union(*values.values()) if values else {0}
            self._label_table = _table_from_values(found_all, self._segment_table)
        return values

    @property
    def label_fold(self) -> LabelFold | None:
        """The dataset-wide fold of picture masks (after :meth:`scan_labels`), else None."""
        return self._fold

    def __repr__(self) -> str:
        return (f"Dataset({str(self.root)!r}, layout={self.layout!r}, {len(self.labelled)} labelled, "
                f"{len(self.unlabelled)} unlabelled, {self.dimension}D)")


def _array_view(image: object) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayViewFromImage(image)


def _needs_fold(path: Path, components: int, segmentation: bool) -> bool:
    return not segmentation and (image_suffix(path) in RASTER_SUFFIXES or components > 1)


def _undeclared_message(values: list[int], table: LabelTable) -> str:
    declared = ", ".join(f"{label.value}={label.name}" for label in table)
    return (f"label values {values} are not declared in {table.source or 'the label table'} (declared: {declared}); "
            "add them there or correct the label")


def _table_from_values(values: set[int], segments: LabelTable | None) -> LabelTable:
    if segments is None:
        return LabelTable.default(values)
    named = {label.value: label for label in segments}
    labels = [named.get(v, Label(v, f"label_{v}")) for v in values | set(named)]
    return LabelTable(labels, source=segments.source, declared=False)


def _override(geometry: Geometry, spacing: tuple[float, ...] | None) -> Geometry:
    return geometry if not spacing else dataclasses.replace(geometry, spacing=tuple(spacing))


def _read_headers(candidate: Candidate) -> tuple[Candidate, _Headers | None, Problem | None]:
    """Headers of a candidate's image and label, or the problem that leaves the case out."""

    def left_out(path: Path, message: str) -> tuple[Candidate, None, Problem]:
        text = message_without_path(message, path) + " (case left out)"
        return candidate, None, Problem(ERROR, path, text, candidate.case_id)

    try:
        image = read_image_info(candidate.image_path)
    except DataError as exc:
        return left_out(candidate.image_path, str(exc))
    if image.channel_problem():
        return left_out(candidate.image_path, image.channel_problem() or "")
    label = None
    if candidate.label_path is not None:
        path = candidate.label_path
        try:
            label = read_image_info(path)
        except DataError as exc:
            return left_out(path, str(exc))
        if label.channel_problem():
            return left_out(path, label.channel_problem() or "")
        mismatch = label_mismatch(label.geometry, image.geometry, allow_subregion=label.is_segmentation)
        if mismatch:
            return left_out(path, f"does not overlay its image {candidate.image_path.name}: {mismatch}. A label "
                            "needs its image's size, spacing, origin and direction; save it from the image it was "
                            "drawn on")
    return candidate, _Headers(image, label), None


def dataset_path(path: str | Path) -> Path:
    """``path`` (a dataset folder or manifest file, ``~`` expanded), checked to exist.

    Raises:
        DataError: nothing is there.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: not found; give a dataset folder or a manifest file")
    return path


def build_dataset(path: str | Path, *, subject_pattern: str | None = None, workers: int | None = None) -> Dataset:
    """List a dataset and read its headers, recording every problem instead of stopping at the first.

    Args:
        path: dataset folder or manifest file (see :mod:`tskd.data.discover`, :mod:`tskd.data.manifest`).
        subject_pattern: regular expression whose first group is the subject id of a case name
            (overrides ``subject_pattern`` in labels.json / the manifest).
        workers: threads for reading headers (default: up to 4).

    Raises:
        DataError: the path does not exist or has no known layout (nothing else can be said).
    """
    path = dataset_path(path)
    discovery: Discovery = read_manifest(path) if path.is_file() else discover_folder(path)
    problems = list(discovery.problems)
    pattern = subject_pattern or discovery.subject_pattern
    subjects = assign_subjects(discovery.candidates, pattern, problems, discovery.root)

    headers: dict[str, _Headers] = {}
    usable: list[Candidate] = []
    for candidate, header, problem in parallel_map(_read_headers, discovery.candidates, workers):
        if problem is not None:
            problems.append(problem)
        else:
            headers[candidate.case_id] = header  # type: ignore[assignment]
            usable.append(candidate)

    fatal: list[str] = []
    dims = Counter(headers[c.case_id].image.dimension for c in usable)
    if len(dims) > 1:
        examples = {d: next(c.image_path.name for c in usable if headers[c.case_id].image.dimension == d) for d in dims}
        counts = ", ".join(f"{n} {d}D, e.g. {examples[d]}" for d, n in sorted(dims.items()))
        fatal.append(f"2D and 3D images are mixed ({counts}); put them in separate datasets")
    dimension = next(iter(dims)) if len(dims) == 1 else 0

    cases = []
    for candidate in usable:
        spacing = candidate.spacing
        if spacing is not None and dimension:
            if len(spacing) == 1:
                spacing = spacing * dimension
            elif len(spacing) != dimension:
                problems.append(Problem(ERROR, candidate.image_path, f"spacing {spacing} has {len(spacing)} values but "
                                        f"the image is {dimension}D (case left out)", candidate.case_id))
                headers.pop(candidate.case_id)
                continue
        subject = subjects[candidate.case_id]
        cases.append(Case(candidate.case_id, subject, candidate.image_path, candidate.label_path, spacing))

    if dimension == 2:
        no_size = [c for c in cases if c.spacing_override is None and image_suffix(c.image_path) in RASTER_SUFFIXES
                   and all(s == 1.0 for s in headers[c.case_id].image.geometry.spacing)]
        if no_size:
            problems.append(Problem(WARNING, discovery.root, f"{len(no_size)} 2D images have no pixel size (e.g. "
                                    f"{no_size[0].image_path.name}): sizes are in pixels (1 mm assumed). Add a CSV "
                                    "with columns filename,pixel_size_mm to the dataset folder"))
    lossy = [c for c in cases if c.label_path is not None and image_suffix(c.label_path) in (".jpg", ".jpeg")]
    if lossy:
        problems.append(Problem(WARNING, lossy[0].label_path, f"{len(lossy)} labels are JPEG files: JPEG blurs mask "
                                "edges into in-between values that read as extra labels; save masks as PNG"))
    segments = {case_id: h.label.segments for case_id, h in headers.items()
                if h.label is not None and h.label.is_segmentation}
    segment_table, remaps = match_segments(segments, discovery.label_table)
    dataset = Dataset(
        root=discovery.root, layout=discovery.layout, cases=cases, dimension=dimension, problems=problems,
        headers=headers, declared_table=discovery.label_table, segment_table=segment_table, segment_remaps=remaps,
        subject_pattern=pattern, spacing_source=discovery.spacing_source, fatal=fatal,
    )
    if not dataset.labelled:
        dataset.fatal.append("no labelled case is usable")
    return dataset


def load_dataset(path: str | Path, *, subject_pattern: str | None = None) -> Dataset:
    """Load a dataset folder or manifest (headers only; see the module docstring).

    Args:
        path: dataset folder (``images/`` + ``labels/``, MSD ``imagesTr/`` + ``labelsTr/``) or a
            manifest (CSV/JSON).
        subject_pattern: regular expression whose first group is a case name's subject id.

    Raises:
        DataError: the dataset as a whole cannot be used (message lists why and the first errors).
    """
    dataset = build_dataset(path, subject_pattern=subject_pattern)
    if not dataset.usable:
        errors = "; ".join(str(p) for p in dataset.errors[:5])
        more = f" (and {len(dataset.errors) - 5} more)" if len(dataset.errors) > 5 else ""
        raise DataError(f"{dataset.root}: the dataset cannot be used: {'; '.join(dataset.fatal)}"
                        + (f". Errors: {errors}{more}" if errors else "") + ". Run 'tskd data check' for a full report")
    for problem in dataset.problems:
        logger.debug("%s", problem)
    return dataset
