"""Manifest files: a list of image/label pairs when files do not follow a folder layout.

CSV (or TSV) with a header row::

    image,label,subject,spacing
    scans/a.nii.gz,labels/a.nii.gz,patient1,
    scans/b.png,labels/b.png,patient1,0.08
    scans/c.nii.gz,,patient2,          <- no label: an unlabelled image

or JSON: a list of objects with the same keys, or ``{"cases": [...], "labels": {...},
"subject_pattern": "..."}`` (``labels`` as in ``labels.json``). Only ``image`` is required; paths
are relative to the manifest's folder (absolute paths work too). ``spacing`` is one number
(isotropic, mm) or several (``"0.8 0.8 2.5"``). A ``labels.json`` or ``dataset.json`` beside the
manifest names the labels when the manifest does not.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

from tskd.data.cases import ERROR, Problem
from tskd.data.discover import Candidate, Discovery, parse_spacing, stem_of
from tskd.data.labels import LabelTable, read_subject_pattern
from tskd.errors import DataError

__all__ = ["MANIFEST_SUFFIXES", "read_manifest"]

MANIFEST_SUFFIXES = (".csv", ".tsv", ".json")
_ALIASES = {
    "image": ("image", "images", "img", "imagepath", "imagefile", "path", "filename"),
    "label": ("label", "labels", "mask", "masks", "seg", "segmentation", "labelpath", "labelfile", "maskpath"),
    "subject": ("subject", "subjectid", "patient", "patientid"),
    "spacing": ("spacing", "pixelsizemm", "pixelsize", "spacingmm", "voxelsizemm", "voxelsize"),
}


def _norm(key: str) -> str:
    return re.sub(r"[^a-z]", "", key.lower())


def _canonical(row: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in row.items():
        if key is None:
            continue
        norm = _norm(key)
        for field, aliases in _ALIASES.items():
            if norm in aliases and field not in out:
                out[field] = value.strip() if isinstance(value, str) else value
    return out


def _rows(path: Path) -> tuple[list[dict[str, Any]], Any, str | None]:
    """Rows, the ``labels`` spec and ``subject_pattern`` of a manifest."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8-sig"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DataError(f"{path}: is not valid JSON ({exc})") from None
        labels, pattern = None, None
        if isinstance(data, dict):
            labels, pattern = data.get("labels"), data.get("subject_pattern")
            data = data.get("cases", data.get("training"))
        if not isinstance(data, list):
            raise DataError(f"{path}: expected a list of {{\"image\", \"label\"}} objects (or {{\"cases\": [...]}})")
        rows = []
        for number, item in enumerate(data, start=1):
            if isinstance(item, str):
                item = {"image": item}
            elif isinstance(item, (list, tuple)) and 1 <= len(item) <= 2:
                item = {"image": item[0], "label": item[1] if len(item) > 1 else None}
            if not isinstance(item, dict):
                raise DataError(f"{path}: entry {number} is not an object with \"image\" (and \"label\"): {item!r}")
            rows.append(_canonical(item))
        return rows, labels, pattern
    delimiter = "\t" if suffix == ".tsv" else ","
    try:
        with path.open(newline="", encoding="utf-8-sig") as stream:
            sample = stream.read(4096)
            stream.seek(0)
            if suffix == ".csv" and sample.count(";") > sample.count(","):
                delimiter = ";"
            reader = csv.DictReader(stream, delimiter=delimiter)
            rows = [_canonical(row) for row in reader]
            columns = [_norm(c) for c in reader.fieldnames or []]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{path}: cannot be read as a CSV table ({exc})") from None
    if not any(c in _ALIASES["image"] for c in columns):
        raise DataError(f"{path}: needs an 'image' column (and 'label', optional 'subject', 'spacing'); "
                        f"found columns {reader.fieldnames}")
    return rows, None, None


def _resolve(base: Path, text: Any) -> Path | None:
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    path = Path(str(text).strip()).expanduser()
    return path if path.is_absolute() else base / path


def read_manifest(path: Path) -> Discovery:
    """Read a manifest (format in the module docstring) into candidate cases.

    Raises:
        DataError: unreadable manifest, unknown suffix, or no rows.
    """
    if path.suffix.lower() not in MANIFEST_SUFFIXES:
        raise DataError(f"{path}: is a file but not a manifest (.csv, .tsv or .json); give a dataset folder or "
                        "a manifest")
    rows, labels_spec, pattern = _rows(path)
    if not rows:
        raise DataError(f"{path}: the manifest lists no cases")
    base = path.parent
    discovery = Discovery(root=base, layout="manifest", subject_pattern=pattern)
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        where = f"row {number}" if path.suffix.lower() != ".json" else f"entry {number}"
        image = _resolve(base, row.get("image"))
        label = _resolve(base, row.get("label"))
        if image is None:
            discovery.problems.append(Problem(ERROR, path, f"{where}: no image path (row left out)"))
            continue
        case_id = stem_of(image)
        seen[case_id.lower()] = seen.get(case_id.lower(), 0) + 1
        if seen[case_id.lower()] > 1:
            case_id = f"{case_id}-{seen[case_id.lower()]}"
        if not image.exists():
            message = f"{where}: image {image} not found"
            if label is not None and label.exists():
                message += f" (its label {label.name} is left without an image)"
            discovery.problems.append(Problem(ERROR, path, message + "; fix the path", case_id))
            continue
        if label is not None and not label.exists():
            message = f"{where}: label {label} not found; fix the path (case left out)"
            discovery.problems.append(Problem(ERROR, path, message, case_id))
            continue
        subject = row.get("subject")
        spacing = parse_spacing(row.get("spacing"), f"{path}: {where}")
        subject_id = str(subject) if subject not in (None, "") else None
        discovery.candidates.append(Candidate(case_id, image, label, subject_id=subject_id, spacing=spacing))
        if spacing:
            discovery.spacing_source = path.name
    if labels_spec is not None:
        discovery.label_table = LabelTable.from_mapping(labels_spec, where=f"{path}: labels", source=path.name)
    elif (base / "labels.json").is_file():
        discovery.label_table = LabelTable.from_labels_json(base / "labels.json")
        discovery.subject_pattern = discovery.subject_pattern or read_subject_pattern(base / "labels.json")
    elif (base / "dataset.json").is_file():
        discovery.label_table = LabelTable.from_dataset_json(base / "dataset.json")
    return discovery
