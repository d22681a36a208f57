"""Loading a student package: a folder, a ``.tskd.zip``, or a run folder holding ``package/``.

The format is described in ``docs/student-package.md``: ``model.onnx``, ``tskd-model.json``
(metadata) and optionally ``student.pt``. :meth:`StudentPackage.load` finds the package, unpacks
a zip safely (:mod:`tskd.runtime.archive`), and checks the metadata field by field, so a damaged
or foreign file gives one clear message naming the file and the field.

Standard library and :mod:`tskd.preprocess` only, Python 3.9 syntax: shipped into Slicer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from ..preprocess import NormalizationSpec
from .archive import unpack_zip
from .postprocess import check_postprocessing
from .format import (
    FORMAT_NAME,
    FORMAT_VERSION,
    FORMAT_VERSION_SINGLE_SLICE,
    METADATA_NAME,
    ONNX_NAME,
    PACKAGE_SUFFIX,
    TORCH_NAME,
    PackageError,
    PathLike,
)

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FORMAT_VERSION_SINGLE_SLICE",
    "METADATA_NAME",
    "ONNX_NAME",
    "TORCH_NAME",
    "PACKAGE_SUFFIX",
    "PackageError",
    "PackageLabel",
    "StudentPackage",
    "find_package_folder",
]

class PackageLabel(NamedTuple):
    """One output class of the model: channel ``c`` of the logits is ``labels[c]``.

    Args:
        value: the label value written into label maps (0 = background).
        name: readable name.
        color: ``(r, g, b)`` in 0..1.
    """

    value: int
    name: str
    color: Tuple[float, float, float]


def find_package_folder(path: PathLike) -> Path:
    """The package folder for ``path``: the folder itself, or ``path/package`` for a run folder.

    Raises:
        PackageError: neither holds a ``tskd-model.json``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise PackageError(f"{path}: not found; give a student package folder, a {PACKAGE_SUFFIX} file or a run folder")
    if path.is_dir():
        for candidate in (path, path / "package"):
            if (candidate / METADATA_NAME).is_file():
                return candidate
        raise PackageError(
            f"{path}: no {METADATA_NAME} here or in {path / 'package'}; give a student package folder, "
            f"a {PACKAGE_SUFFIX} file, or a run folder whose training finished (it writes package/)"
        )
    raise PackageError(f"{path}: not a folder or a {PACKAGE_SUFFIX} file")


def _field(data: Dict[str, Any], key: str, where: str) -> Any:
    if not isinstance(data, dict) or key not in data:
        raise PackageError(f"{where}: missing field '{key}'")
    return data[key]


def _integer(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise PackageError(f"{where}: expected a whole number, got {value!r}")
    return int(value)


def _parse_labels(raw: Any, where: str) -> Tuple[PackageLabel, ...]:
    if not isinstance(raw, list) or len(raw) < 2:
        raise PackageError(f"{where}: expected a list of at least 2 labels (background first), got {raw!r}")
    labels = []
    for position, item in enumerate(raw):
        here = f"{where}[{position}]"
        value = _integer(_field(item, "value", here), f"{here}.value")
        name = _field(item, "name", here)
        if not isinstance(name, str) or not name:
            raise PackageError(f"{here}.name: expected a non-empty text, got {name!r}")
        color = _field(item, "color", here)
        if (
            not isinstance(color, list)
            or len(color) != 3
            or not all(isinstance(c, (int, float)) and not isinstance(c, bool) and 0 <= c <= 1 for c in color)
        ):
            raise PackageError(f"{here}.color: expected [r, g, b] with values in 0..1, got {color!r}")
        if value < 0:
            raise PackageError(f"{here}.value: label values must be >= 0, got {value}")
        labels.append(PackageLabel(value, name, (float(color[0]), float(color[1]), float(color[2]))))
    values = [label.value for label in labels]
    if values[0] != 0:
        raise PackageError(f"{where}[0].value: the first label (channel 0) must be the background, value 0; got {values[0]}")
    if len(set(values)) != len(values):
        raise PackageError(f"{where}: label values repeat: {values}")
    return tuple(labels)


class StudentPackage:
    """A validated student package on disk.

    Use :meth:`load`. Properties give everything the metadata holds; :attr:`metadata` is the raw dict.

    Args:
        folder: the package folder (holding ``tskd-model.json`` and ``model.onnx``).
        metadata: its parsed ``tskd-model.json``.
        source: what the user gave (a zip, a run folder...), for messages.
    """

    def __init__(self, folder: Path, metadata: Dict[str, Any], source: Optional[Path] = None) -> None:
        self.folder = Path(folder)
        self.source = Path(source) if source is not None else self.folder
        self.metadata = metadata
        where = str(self.folder / METADATA_NAME)
        name = _field(metadata, "format", where)
        if name != FORMAT_NAME:
            raise PackageError(f"{where}: field 'format' is {name!r}, not {FORMAT_NAME!r}: not a tskd student package")
        version = _integer(_field(metadata, "format_version", where), f"{where}: format_version")
        if version > FORMAT_VERSION:
            raise PackageError(
                f"{where}: format_version {version} is newer than this tskd understands ({FORMAT_VERSION}); update tskd"
            )
        if version < 1:
            raise PackageError(f"{where}: format_version must be >= 1, got {version}")
        self._labels = _parse_labels(_field(metadata, "labels", where), f"{where}: labels")
        inputs = _field(metadata, "input", where)
        self._input_size = _integer(_field(inputs, "size", f"{where}: input"), f"{where}: input.size")
        if self._input_size < 8:
            raise PackageError(f"{where}: input.size must be at least 8 pixels, got {self._input_size}")
        self._slice_axis = _integer(_field(inputs, "slice_axis", f"{where}: input"), f"{where}: input.slice_axis")
        if self._slice_axis not in (0, 1, 2):
            raise PackageError(f"{where}: input.slice_axis must be 0, 1 or 2, got {self._slice_axis}")
        self._context_slices = _integer(inputs.get("context_slices", 0), f"{where}: input.context_slices")
        if not 0 <= self._context_slices <= 8:
            raise PackageError(f"{where}: input.context_slices must be between 0 and 8, got {self._context_slices}")
        try:
            self._normalization = NormalizationSpec.from_dict(_field(inputs, "normalization", f"{where}: input"))
        except (TypeError, ValueError) as exc:
            raise PackageError(f"{where}: input.normalization: {exc}") from None
        if self._normalization.mode == "percentile" and self._normalization.resolved:
            raise PackageError(
                f"{where}: input.normalization holds one image's percentile statistics; "
                "a package must hold the unresolved spec (mode 'percentile' without lower/upper/mean/std)"
            )
        post = metadata.get("postprocessing") or {}
        if not isinstance(post, dict):
            raise PackageError(f"{where}: field 'postprocessing' must be a mapping, got {post!r}")
        try:
            self._postprocessing = check_postprocessing(post.get("method", "none"), f"{where}: postprocessing.method")
        except ValueError as exc:  # a package written by a newer tskd may name a method this one lacks
            raise PackageError(f"{exc}; if a newer tskd wrote the package, an update of tskd reads it") from None
        onnx = metadata.get("onnx") or {}
        if not isinstance(onnx, dict):
            raise PackageError(f"{where}: field 'onnx' must be a mapping, got {onnx!r}")
        self._onnx = onnx
        if not self.onnx_path.is_file():
            raise PackageError(f"{self.onnx_path}: missing; the package is incomplete (export it again)")

    @classmethod
    def load(cls, path: PathLike, *, cache_dir: Optional[PathLike] = None) -> StudentPackage:
        """Load and validate a package folder, a ``.tskd.zip`` or a run folder holding ``package/``.

        Args:
            path: the package, zip or run folder.
            cache_dir: where zips are unpacked (default: ``.tskd-cache`` next to the zip).

        Raises:
            PackageError: not found, not a package, unsafe zip, or invalid metadata.
        """
        source = Path(path).expanduser()
        if source.is_file() and source.name in (METADATA_NAME, ONNX_NAME):
            folder = source.parent  # a file inside a package folder
        elif source.is_file():
            folder = unpack_zip(source, cache_dir)
        else:
            folder = find_package_folder(source)
        meta_path = folder / METADATA_NAME
        try:
            metadata = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise PackageError(f"{meta_path}: cannot be read as JSON ({exc}); export the package again") from None
        if not isinstance(metadata, dict):
            raise PackageError(f"{meta_path}: expected a JSON object, got {type(metadata).__name__}")
        return cls(folder, metadata, source)

    # -- metadata -----------------------------------------------------------------------------
    @property
    def format_version(self) -> int:
        return int(self.metadata["format_version"])

    @property
    def tskd_version(self) -> str:
        return str(self.metadata.get("tskd_version", ""))

    @property
    def created(self) -> str:
        return str(self.metadata.get("created", ""))

    @property
    def labels(self) -> Tuple[PackageLabel, ...]:
        """The output classes in channel order (channel 0 = background)."""
        return self._labels

    @property
    def label_values(self) -> List[int]:
        return [label.value for label in self._labels]

    @property
    def label_names(self) -> List[str]:
        return [label.name for label in self._labels]

    @property
    def num_classes(self) -> int:
        """K, the number of output channels (including the background)."""
        return len(self._labels)

    @property
    def input_size(self) -> int:
        """S: slices are resized to S x S before the model."""
        return self._input_size

    @property
    def slice_axis(self) -> int:
        """Numpy axis of the ``(k, j, i)`` volume along which it is sliced."""
        return self._slice_axis

    @property
    def context_slices(self) -> int:
        """``c``: the model sees each slice between its ``c`` neighbours on either side (``2c + 1`` input
        channels, :func:`tskd.preprocess.context_positions`); 0 (single slices) in packages without the field."""
        return self._context_slices

    @property
    def normalization(self) -> NormalizationSpec:
        return self._normalization

    @property
    def student(self) -> Dict[str, Any]:
        """``architecture`` and ``parameters`` of the student."""
        return dict(self.metadata.get("student") or {})

    @property
    def architecture(self) -> str:
        return str(self.student.get("architecture", ""))

    @property
    def teacher(self) -> Optional[Dict[str, Any]]:
        teacher = self.metadata.get("teacher")
        return dict(teacher) if isinstance(teacher, dict) else None

    @property
    def metrics(self) -> Dict[str, Any]:
        return dict(self.metadata.get("metrics") or {})

    @property
    def postprocessing(self) -> str:
        """The post-processing the export stage chose on the validation cases (one of
        :data:`tskd.runtime.postprocess.POSTPROCESSING_METHODS`; ``none`` in packages without the field)."""
        return self._postprocessing

    @property
    def kind(self) -> Optional[str]:
        """``"distilled"`` or ``"reference"`` (the labels-only student); None in packages that do
        not say (written before tskd recorded it, or by the benchmark's baselines)."""
        kind = self.metadata.get("kind")
        return kind if kind in ("distilled", "reference") else None

    @property
    def comparison(self) -> Optional[Dict[str, Any]]:
        """The run's comparison of its two students (``distilled``, ``reference``, ``chosen``,
        ``decided_on``, ``verdict``...); None when the package does not carry one."""
        comparison = self.metadata.get("comparison")
        return dict(comparison) if isinstance(comparison, dict) else None

    @property
    def onnx(self) -> Dict[str, Any]:
        return dict(self._onnx)

    @property
    def input_name(self) -> str:
        return str(self._onnx.get("input_name", "image"))

    @property
    def output_name(self) -> str:
        return str(self._onnx.get("output_name", "logits"))

    # -- files --------------------------------------------------------------------------------
    @property
    def onnx_path(self) -> Path:
        return self.folder / ONNX_NAME

    @property
    def torch_path(self) -> Optional[Path]:
        """``student.pt`` when the package has torch weights, else None."""
        path = self.folder / TORCH_NAME
        return path if path.is_file() else None

    def __repr__(self) -> str:
        names = ", ".join(f"{label.value}: {label.name}" for label in self._labels)
        return (
            f"StudentPackage({str(self.folder)!r}, {self.architecture or 'student'}, input {self._input_size}, "
            f"axis {self._slice_axis}, labels {{{names}}})"
        )
