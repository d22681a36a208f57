"""Finding the cases of a dataset folder: layouts, pairing images with labels by name, pixel sizes.

Accepted folder layouts (folder names are matched case-insensitively)::

    DATASET/images/ + labels/ (or masks/)         one label per image, same name
    DATASET/imagesTr/ + labelsTr/ (+ imagesTs/)   Medical Segmentation Decathlon / nnU-Net
    DATASET/unlabelled/                           optional, images without labels

An image and a label pair when their names agree without the file suffix; nnU-Net's channel suffix
``_0000`` on images and common label suffixes (``_mask``, ``_label``, ``_seg``...) are ignored, so
``case_0000.nii.gz`` pairs with ``case.nii.gz`` and ``010_HC.png`` with ``010_HC_Annotation.png``.
A DICOM series folder inside ``images/`` is one image named after the folder.

A CSV in the dataset folder with a ``filename`` column and a pixel size column (``spacing``,
``pixel_size_mm`` or ``pixel size(mm)``, in mm) gives 2D pictures their physical pixel size.
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

from tskd.data.cases import ERROR, WARNING, Problem
from tskd.data.dicom import series_ids
from tskd.data.image import image_suffix
from tskd.data.labels import LabelTable, read_subject_pattern
from tskd.errors import DataError

__all__ = ["Candidate", "Discovery", "discover_folder", "parse_spacing", "read_spacing_csv", "stem_of"]

logger = logging.getLogger(__name__)

IMAGE_DIRS = ("images", "imagestr")
LABEL_DIRS = ("labels", "masks", "labelstr", "segmentations", "annotations")
UNLABELLED_DIRS = ("unlabelled", "unlabeled", "imagests")
_CHANNEL = re.compile(r"^(.*)_(\d{4})$")
_LABEL_SUFFIX = re.compile(r"[_-](mask|masks|label|labels|seg|segmentation|annotation|gt)$", re.IGNORECASE)
_COMPANIONS = (".raw", ".zraw", ".img")
_SPACING_COLUMNS = ("spacing", "pixelsizemm", "pixelsize", "spacingmm", "voxelsizemm", "voxelsize")
_FILENAME_COLUMNS = ("filename", "file", "image", "name")


@dataclass
class Candidate:
    """An image (and label) found on disk, before its headers are read."""

    case_id: str
    image_path: Path
    label_path: Path | None = None
    subject_id: str | None = None
    spacing: tuple[float, ...] | None = None


@dataclass
class Discovery:
    """What the file listing found: candidate cases, problems, declared labels and options."""

    root: Path
    layout: str
    candidates: list[Candidate] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    label_table: LabelTable | None = None
    subject_pattern: str | None = None
    spacing_source: str | None = None


def stem_of(path: Path) -> str:
    """File name without its image suffix (``.nii.gz``, ``.seg.nrrd``...); folder names unchanged."""
    suffix = image_suffix(path)
    name = path.name
    return name[: len(name) - len(suffix)] if suffix and not path.is_dir() else name


def _find_dir(root: Path, names: tuple[str, ...]) -> Path | None:
    children = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    for name in names:
        if name in children:
            return children[name]
    return None


def _is_dicom_folder(folder: Path) -> bool:
    try:
        return bool(series_ids(folder))
    except RuntimeError:
        return False


def list_images(folder: Path, problems: list[Problem]) -> list[Path]:
    """Image files and DICOM series folders in ``folder``; anything else is reported and skipped."""
    entries = sorted(folder.iterdir())
    stems = {stem_of(p).lower() for p in entries if image_suffix(p) in (".mhd",)}
    found = []
    for entry in entries:
        if entry.is_dir():
            if _is_dicom_folder(entry):
                found.append(entry)
            else:
                problems.append(Problem(WARNING, entry, "skipped: a folder that holds no DICOM series"))
        elif entry.name.startswith(".") or not image_suffix(entry):
            if entry.suffix.lower() in _COMPANIONS and entry.stem.lower() in stems:
                continue  # pixel data of a .mhd header
            problems.append(Problem(WARNING, entry, "skipped: not an image file"))
        else:
            found.append(entry)
    return found


def _image_ids(paths: list[Path], label_stems: set[str]) -> dict[Path, str | None]:
    """Case id per image; None for an extra nnU-Net channel (``_0001``...) of a case.

    ``case_0000`` is case ``case`` when a label is named ``case``, or when every image of the folder
    carries a four-digit channel suffix with ``_0000`` present for at least two cases (nnU-Net's
    ``imagesTs``); otherwise names are taken as they are.
    """
    stems = {p: stem_of(p) for p in paths}
    groups: dict[str, set[str]] = {}
    matches = {p: _CHANNEL.match(s) for p, s in stems.items()}
    for match in matches.values():
        if match:
            groups.setdefault(match.group(1).lower(), set()).add(match.group(2))
    nnunet = (bool(stems) and all(matches.values()) and len(groups) >= 2
              and all("0000" in channels for channels in groups.values()))
    ids: dict[Path, str | None] = {}
    for path, stem in stems.items():
        match = matches[path]
        if match and stem.lower() not in label_stems and (match.group(1).lower() in label_stems or nnunet):
            ids[path] = match.group(1) if match.group(2) == "0000" else None
        else:
            ids[path] = stem
    return ids


def _label_key(stem: str, image_keys: set[str]) -> str:
    key = stem.lower()
    if key in image_keys:
        return key
    stripped = _LABEL_SUFFIX.sub("", stem).lower()
    return stripped if stripped in image_keys else key


def pair_folder(images_dir: Path, labels_dir: Path | None, problems: list[Problem]) -> list[Candidate]:
    """Pair the images of ``images_dir`` with the labels of ``labels_dir`` by name."""
    images = list_images(images_dir, problems)
    labels = list_images(labels_dir, problems) if labels_dir else []
    label_stems = {stem_of(p).lower() for p in labels}
    ids = _image_ids(images, label_stems)
    by_key: dict[str, list[Path]] = {}
    for path in images:
        case_id = ids[path]
        if case_id is None:
            problems.append(Problem(WARNING, path, "skipped: an extra image channel (only the _0000 channel is "
                                    "used; tskd supports single-channel images)"))
            continue
        by_key.setdefault(case_id.lower(), []).append(path)
    labels_by_key: dict[str, list[Path]] = {}
    for path in labels:
        labels_by_key.setdefault(_label_key(stem_of(path), set(by_key)), []).append(path)

    candidates = []
    for key, paths in sorted(by_key.items()):
        case_id = ids[paths[0]] or key
        found = labels_by_key.pop(key, [])
        if len(paths) > 1:
            problems.append(Problem(ERROR, paths[0].parent, f"case '{case_id}' has several images: "
                                    f"{', '.join(p.name for p in paths)}; keep one (case left out)", case_id))
            continue
        if len(found) > 1:
            problems.append(Problem(ERROR, found[0].parent, f"case '{case_id}' has several labels: "
                                    f"{', '.join(p.name for p in found)}; keep one (case left out)", case_id))
            continue
        label = found[0] if found else None
        if label is None and labels_dir is not None:
            message = f"no label in {labels_dir.name}/: used as an unlabelled image"
            problems.append(Problem(WARNING, paths[0], message, case_id))
        candidates.append(Candidate(case_id, paths[0], label))
    for key, paths in sorted(labels_by_key.items()):
        for path in paths:
            problems.append(Problem(ERROR, path, f"label without an image: no file named '{stem_of(path)}' "
                                    f"(any image suffix) in {images_dir.name}/; add the image or remove the label"))
    return candidates


def discover_folder(root: Path) -> Discovery:
    """List a dataset folder (layouts in the module docstring).

    Raises:
        DataError: no known layout, or an image folder without its label folder.
    """
    images_dir = _find_dir(root, IMAGE_DIRS)
    if images_dir is None:
        content = ", ".join(sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:12]) or "nothing"
        raise DataError(
            f"{root}: no images/ (or imagesTr/) folder found (it holds: {content}). Expected DATASET/images/ with "
            "DATASET/labels/ (or masks/) of the same file names, MSD's imagesTr/ + labelsTr/, or a manifest "
            "file (CSV or JSON with image,label columns)"
        )
    msd = images_dir.name.lower() == "imagestr"
    labels_dir = _find_dir(root, ("labelstr",) if msd else LABEL_DIRS)
    discovery = Discovery(root=root, layout="msd" if msd else "folders")
    if labels_dir is None:
        discovery.problems.append(Problem(ERROR, root, f"no {'labelsTr' if msd else 'labels/ (or masks/)'} folder "
                                          f"next to {images_dir.name}/: every image is unlabelled"))
    discovery.candidates = pair_folder(images_dir, labels_dir, discovery.problems)
    for name in UNLABELLED_DIRS:
        extra = _find_dir(root, (name,))
        if extra is None or extra == images_dir:
            continue
        taken = {c.case_id.lower() for c in discovery.candidates}
        for candidate in pair_folder(extra, None, discovery.problems):
            if candidate.case_id.lower() in taken:
                candidate.case_id = f"{extra.name}/{candidate.case_id}"
            discovery.candidates.append(candidate)

    dataset_json = root / "dataset.json"
    labels_json = root / "labels.json"
    if dataset_json.is_file():
        discovery.label_table = LabelTable.from_dataset_json(dataset_json)
    if labels_json.is_file():
        table = LabelTable.from_labels_json(labels_json)
        if discovery.label_table is not None and discovery.label_table.values != table.values:
            discovery.problems.append(Problem(WARNING, labels_json, "differs from dataset.json; labels.json is used"))
        discovery.label_table = table
        discovery.subject_pattern = read_subject_pattern(labels_json)
    _apply_spacing_csv(root, discovery)
    return discovery


def parse_spacing(text: object, where: str) -> tuple[float, ...] | None:
    """A pixel/voxel size: one number (isotropic) or several separated by spaces, ``x`` or ``,``.

    Returns None for an empty value.

    Raises:
        DataError: not positive numbers.
    """
    if text is None:
        return None
    if isinstance(text, (int, float)):
        values = [float(text)]
    elif isinstance(text, (list, tuple)):
        values = [float(v) for v in text]
    else:
        parts = [p for p in re.split(r"[\sx,;]+", str(text).strip()) if p]
        if not parts:
            return None
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise DataError(f"{where}: spacing {text!r} is not a number (mm), e.g. 0.1 or '0.1 0.1 2.5'") from None
    if not values or any(not v > 0 for v in values):
        raise DataError(f"{where}: spacing {text!r} must be positive (mm)")
    return tuple(values)


def _norm(column: str) -> str:
    return re.sub(r"[^a-z]", "", column.lower())


def read_spacing_csv(path: Path) -> dict[str, tuple[float, ...]] | None:
    """File name (and stem) -> pixel size from a CSV with filename and pixel size columns; None if it has neither."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            reader = csv.DictReader(stream)
            columns = {_norm(c): c for c in (reader.fieldnames or [])}
            name_col = next((columns[c] for c in _FILENAME_COLUMNS if c in columns), None)
            size_col = next((columns[c] for c in _SPACING_COLUMNS if c in columns), None)
            if name_col is None or size_col is None or "label" in columns:
                return None
            table: dict[str, tuple[float, ...]] = {}
            for row_number, row in enumerate(reader, start=2):
                name = (row.get(name_col) or "").strip()
                spacing = parse_spacing(row.get(size_col), f"{path}: row {row_number}")
                if name and spacing:
                    table[Path(name).name.lower()] = spacing
                    table.setdefault(stem_of(Path(name)).lower(), spacing)
            return table
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read as a CSV table ({exc})") from None


def _apply_spacing_csv(root: Path, discovery: Discovery) -> None:
    for path in sorted(root.glob("*.csv")):
        table = read_spacing_csv(path)
        if table is None:
            continue
        discovery.spacing_source = path.name
        for candidate in discovery.candidates:
            name = candidate.image_path.name.lower()
            spacing = table.get(name) or table.get(stem_of(candidate.image_path).lower())
            if spacing:
                candidate.spacing = spacing
        logger.debug("pixel sizes from %s", path)
        return
