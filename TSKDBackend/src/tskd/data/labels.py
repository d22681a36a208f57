"""Label tables: which label values a dataset uses, their names and colours.

Value 0 is always the background. A table comes from, in order of preference: the dataset's
``dataset.json`` (Medical Segmentation Decathlon / nnU-Net), a ``labels.json`` file, the segment
names of Slicer ``.seg.nrrd`` files, or defaults (``label_1``, ``label_2``...) for the values found.

``labels.json`` format (in the dataset folder, or beside a manifest)::

    {
      "labels": {
        "0": "background",
        "1": "liver",
        "2": {"name": "spleen", "color": [0, 200, 80]}
      },
      "subject_pattern": "^(\\\\d{3})"
    }

``labels`` maps each value to a name, or to ``{"name", "color"}``; it may also be a list of
``{"value", "name", "color"}`` objects, a list of names (the position is the value), or the
nnU-Net form ``{"liver": 1}``. A colour is ``[r, g, b]`` with integers in 0..255 (or floats in 0..1), or
``"#rrggbb"``; colours let coloured (RGB) masks be read as labels. The whole file may also be just
the ``labels`` mapping. ``subject_pattern`` (optional) is a regular expression whose first group
picks the subject out of a case name, for subject-wise splits.
"""

from __future__ import annotations

import colorsys
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from tskd.errors import DataError

__all__ = [
    "DEFAULT_PALETTE",
    "Label",
    "LabelTable",
    "default_color",
    "parse_color",
    "read_subject_pattern",
]

logger = logging.getLogger(__name__)

#: Distinct colours (RGB, 0..1) for label values 1, 2, 3...; beyond it colours are generated.
DEFAULT_PALETTE: tuple[tuple[float, float, float], ...] = (
    (0.90, 0.10, 0.10),
    (0.10, 0.70, 0.20),
    (0.15, 0.35, 0.90),
    (0.95, 0.80, 0.10),
    (0.60, 0.20, 0.80),
    (0.10, 0.80, 0.80),
    (0.95, 0.50, 0.10),
    (0.90, 0.40, 0.70),
    (0.55, 0.35, 0.15),
    (0.50, 0.80, 0.30),
    (0.30, 0.50, 0.60),
    (0.85, 0.65, 0.55),
)
_BACKGROUND_COLOR = (0.0, 0.0, 0.0)


def default_color(value: int) -> tuple[float, float, float]:
    """Palette colour of a label value (black for the background)."""
    if value <= 0:
        return _BACKGROUND_COLOR
    if value <= len(DEFAULT_PALETTE):
        return DEFAULT_PALETTE[value - 1]
    hue = (value * 0.618033988749895) % 1.0  # golden-ratio steps spread hues evenly
    return tuple(round(c, 4) for c in colorsys.hsv_to_rgb(hue, 0.75, 0.9))  # type: ignore[return-value]


def parse_color(value: Any, where: str = "colour") -> tuple[float, float, float]:
    """A colour as RGB in 0..1 from ``[r, g, b]`` (0..255, or all in 0..1) or ``"#rrggbb"``.

    Raises:
        DataError: anything else (``where`` names the file and field in the message).
    """
    if isinstance(value, str):
        text = value.strip().lstrip("#")
        if len(text) == 6:
            try:
                return tuple(int(text[i : i + 2], 16) / 255.0 for i in (0, 2, 4))  # type: ignore[return-value]
            except ValueError:
                pass
    elif isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(c, (int, float)) and not isinstance(c, bool) for c in value
    ):
        if any(c < 0 or c > 255 for c in value):
            raise DataError(f"{where}: colour {list(value)} has values outside 0..255")
        # floats all within 0..1 are fractions (Slicer style); anything else is 0..255
        fractions = any(isinstance(c, float) for c in value) and all(c <= 1.0 for c in value)
        scale = 1.0 if fractions else 255.0
        return tuple(float(c) / scale for c in value)  # type: ignore[return-value]
    raise DataError(f"{where}: colour {value!r} is not [r, g, b] (0..255) or '#rrggbb'")


@dataclass(frozen=True)
class Label:
    """One label value.

    Args:
        value: the integer stored in label maps (0 = background).
        name: a readable name.
        color: RGB in 0..1 when declared (used to read colour masks), else None.
    """

    value: int
    name: str
    color: tuple[float, float, float] | None = None

    @property
    def display_color(self) -> tuple[float, float, float]:
        return self.color if self.color is not None else default_color(self.value)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"value": self.value, "name": self.name}
        if self.color is not None:
            data["color"] = [round(c, 6) for c in self.color]
        return data


class LabelTable:
    """Ordered label values with names and colours; value 0 (background) is always present.

    Args:
        labels: the labels; a missing 0 is added as ``background``.
        source: where the table came from (``dataset.json``, ``labels.json``, ``seg.nrrd``,
            ``values found``...), shown in reports.
        declared: True when a user file declared the table (values outside it are errors);
            False for tables made from the values found.

    Raises:
        ValueError: negative or repeated values.
    """

    def __init__(self, labels: Iterable[Label], *, source: str = "", declared: bool = True) -> None:
        by_value: dict[int, Label] = {}
        for label in labels:
            if label.value < 0:
                raise ValueError(f"label values must be >= 0, got {label.value} ({label.name!r})")
            if label.value in by_value:
                first = by_value[label.value].name
                raise ValueError(f"label value {label.value} is declared twice ({first!r}, {label.name!r})")
            by_value[label.value] = label
        by_value.setdefault(0, Label(0, "background"))
        self._labels = tuple(by_value[v] for v in sorted(by_value))
        self.source = source
        self.declared = declared

    # -- access -------------------------------------------------------------------------------
    @property
    def labels(self) -> tuple[Label, ...]:
        return self._labels

    @property
    def values(self) -> list[int]:
        return [label.value for label in self._labels]

    @property
    def foreground_values(self) -> list[int]:
        return [label.value for label in self._labels if label.value != 0]

    @property
    def names(self) -> list[str]:
        return [label.name for label in self._labels]

    @property
    def num_classes(self) -> int:
        """Number of classes including the background (K in logits ``(B, K, S, S)``)."""
        return len(self._labels)

    def __len__(self) -> int:
        return len(self._labels)

    def __iter__(self) -> Iterator[Label]:
        return iter(self._labels)

    def __contains__(self, value: object) -> bool:
        return value in self.values

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelTable) and self._labels == other._labels

    def __repr__(self) -> str:
        items = ", ".join(f"{label.value}: {label.name!r}" for label in self._labels)
        return f"LabelTable({{{items}}}, source={self.source!r})"

    def name_of(self, value: int) -> str:
        for label in self._labels:
            if label.value == value:
                return label.name
        return f"label_{value}"

    def value_of(self, name: str) -> int | None:
        """The value whose name matches ``name`` (case-insensitive), or None."""
        wanted = name.strip().lower()
        for label in self._labels:
            if label.name.lower() == wanted:
                return label.value
        return None

    def colors(self) -> dict[int, tuple[float, float, float]]:
        """Declared colours by value (labels without a declared colour are left out)."""
        return {label.value: label.color for label in self._labels if label.color is not None}

    def check_values(self, values: Iterable[int]) -> list[int]:
        """The values in ``values`` that this table does not declare, sorted."""
        known = set(self.values)
        return sorted({int(v) for v in values} - known)

    def to_indices(self, array: np.ndarray) -> np.ndarray:
        """Map label values to class indices ``0..K-1`` (int64, same shape).

        Raises:
            ValueError: the array holds values the table does not declare.
        """
        values = np.asarray(self.values)
        index = np.searchsorted(values, array)
        index = np.clip(index, 0, len(values) - 1)
        if not np.array_equal(values[index], array):
            bad = self.check_values(np.unique(array))
            raise ValueError(f"label values {bad} are not in the label table {self.values}")
        return index.astype(np.int64)

    def from_indices(self, indices: np.ndarray) -> np.ndarray:
        """Map class indices ``0..K-1`` back to label values."""
        return np.asarray(self.values)[np.asarray(indices)]

    # -- serialisation ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "declared": self.declared, "labels": [label.to_dict() for label in self._labels]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelTable:
        labels = [
            Label(int(item["value"]), str(item["name"]), tuple(item["color"]) if item.get("color") else None)
            for item in data["labels"]
        ]
        return cls(labels, source=str(data.get("source", "")), declared=bool(data.get("declared", True)))

    # -- constructors -------------------------------------------------------------------------
    @classmethod
    def default(cls, values: Iterable[int], *, source: str = "values found") -> LabelTable:
        """``background`` for 0 and ``label_<v>`` for every other value."""
        labels = [Label(int(v), "background" if int(v) == 0 else f"label_{int(v)}") for v in set(values)]
        return cls(labels, source=source, declared=False)

    @classmethod
    def from_segments(cls, segments: Iterable[Mapping[str, Any]], *, source: str = "seg.nrrd") -> LabelTable:
        """From Slicer segments (``name``, ``label_value``, ``color``), e.g. ``image.metadata["segments"]``."""
        labels: dict[int, Label] = {}
        for segment in segments:
            value = int(segment["label_value"])
            color = segment.get("color")
            labels.setdefault(value, Label(value, str(segment["name"]), tuple(color) if color else None))
        return cls(labels.values(), source=source)

    @classmethod
    def from_mapping(cls, spec: Any, *, where: str, source: str) -> LabelTable:
        """Parse any of the ``labels`` forms described in the module docstring.

        Raises:
            DataError: the form is not recognised (``where`` names the file and field).
        """
        labels: list[Label] = []
        if isinstance(spec, list):
            for position, item in enumerate(spec):
                if isinstance(item, str):
                    labels.append(Label(position, item))
                elif isinstance(item, dict) and "name" in item:
                    value = _int(item.get("value", position), f"{where}[{position}].value")
                    color = _color_of(item, f"{where}[{position}].color")
                    labels.append(Label(value, str(item["name"]), color))
                else:
                    raise DataError(f"{where}[{position}]: expected a name or {{\"value\", \"name\"}}, got {item!r}")
        elif isinstance(spec, dict) and spec:
            if all(_is_int(key) for key in spec):
                for key, item in spec.items():
                    value = _int(key, f"{where}: key {key!r}")
                    if isinstance(item, dict):
                        if "name" not in item:
                            raise DataError(f"{where}['{key}']: needs a \"name\"")
                        color = _color_of(item, f"{where}['{key}'].color")
                        labels.append(Label(value, str(item["name"]), color))
                    else:
                        labels.append(Label(value, str(item)))
            else:  # nnU-Net v2: name -> value (lists are region definitions)
                for name, item in spec.items():
                    if isinstance(item, (list, tuple)):
                        logger.warning("%s: region label %r (%s) ignored; tskd trains on plain labels",
                                       where, name, item)
                        continue
                    labels.append(Label(_int(item, f"{where}['{name}']"), str(name)))
        else:
            raise DataError(f"{where}: expected a mapping of label value to name, or a list; got {spec!r}")
        try:
            return cls(labels, source=source)
        except ValueError as exc:
            raise DataError(f"{where}: {exc}") from None

    @classmethod
    def from_dataset_json(cls, path: str | Path) -> LabelTable:
        """From an MSD / nnU-Net ``dataset.json`` (its ``labels`` field).

        Raises:
            DataError: unreadable JSON or no ``labels`` field.
        """
        path = Path(path)
        data = _read_json(path)
        if not isinstance(data, dict) or "labels" not in data:
            raise DataError(f"{path}: has no \"labels\" field; add e.g. "
                            "\"labels\": {\"0\": \"background\", \"1\": \"tumour\"}")
        return cls.from_mapping(data["labels"], where=f"{path}: labels", source=path.name)

    @classmethod
    def from_labels_json(cls, path: str | Path) -> LabelTable:
        """From a ``labels.json`` file (format in the module docstring).

        Raises:
            DataError: unreadable JSON or unrecognised form.
        """
        path = Path(path)
        data = _read_json(path)
        spec = data["labels"] if isinstance(data, dict) and "labels" in data else data
        if isinstance(spec, dict):
            spec = {k: v for k, v in spec.items() if k != "subject_pattern"}
        return cls.from_mapping(spec, where=f"{path}: labels", source=path.name)


def read_subject_pattern(path: str | Path) -> str | None:
    """The ``subject_pattern`` field of a ``labels.json``, if any."""
    data = _read_json(Path(path))
    pattern = data.get("subject_pattern") if isinstance(data, dict) else None
    if pattern is not None and not isinstance(pattern, str):
        raise DataError(f"{path}: subject_pattern must be a string (a regular expression), got {pattern!r}")
    return pattern


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: is not valid JSON ({exc})") from None


def _color_of(item: dict[str, Any], where: str) -> tuple[float, float, float] | None:
    return parse_color(item["color"], where) if item.get("color") is not None else None


def _is_int(text: Any) -> bool:
    try:
        int(str(text).strip())
    except ValueError:
        return False
    return True


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise DataError(f"{where}: label value {value!r} is not a whole number")
    try:
        return int(str(value).strip()) if not isinstance(value, (int, float)) else int(value)
    except ValueError:
        raise DataError(f"{where}: label value {value!r} is not a whole number") from None
