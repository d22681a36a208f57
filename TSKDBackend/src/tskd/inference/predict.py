"""Segmenting image files with a student package (``tskd predict``).

Every image the data layer reads (NIfTI, NRRD, MHA/MHD, PNG/JPEG/TIFF, DICOM series folders) is
segmented with :func:`tskd.runtime.segment_volume` and written as a label map with the input's
geometry (2D stays 2D), or as a Slicer ``.seg.nrrd`` with the package's named, coloured segments.
An input that cannot be read is reported and skipped; the others still run. No input file is
ever overwritten.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tskd.data.discover import list_images, stem_of
from tskd.data.image import Image, image_suffix, is_image_path, read_image, write_image
from tskd.errors import ConfigError, DataError, TSKDError
from tskd.runtime import (
    OnnxSegmenter,
    SliceModel,
    StudentPackage,
    resolve_roi,
    segment_volume,
)

__all__ = [
    "FORMATS",
    "BACKENDS",
    "PredictionResult",
    "list_inputs",
    "load_slice_model",
    "output_path_for",
    "parse_roi",
    "predict_files",
]

logger = logging.getLogger(__name__)

#: Output formats; ``same`` keeps the input's format where a label map can be stored in it.
FORMATS = ("same", "nii.gz", "nrrd", "seg.nrrd")
BACKENDS = ("onnx", "torch")
#: What ``same`` writes for input formats that cannot (or should not) hold label maps.
_SAME_FALLBACK = {".dcm": ".nii.gz", "": ".nii.gz", ".jpg": ".png", ".jpeg": ".png"}

Roi = Sequence[tuple[int | None, int | None]]


@dataclass
class PredictionResult:
    """What happened to one input.

    Args:
        input: the image file or DICOM folder.
        output: the label map written (None when it failed).
        shape: the image's numpy shape.
        seconds: time spent on this input.
        error: why it failed (None when it worked).
    """

    input: Path
    output: Path | None = None
    shape: tuple[int, ...] | None = None
    seconds: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def parse_roi(text: str | None) -> list[tuple[int | None, int | None]] | None:
    """``"k0:k1,j0:j1,i0:i1"`` (numpy index bounds; an empty side means the axis's start/end) as pairs.

    Raises:
        ConfigError: not of that form.
    """
    if text is None or not text.strip():
        return None
    pairs: list[tuple[int | None, int | None]] = []
    for part in text.split(","):
        if part.count(":") != 1:
            raise ConfigError(f"--roi {text!r}: each axis needs start:end (e.g. 10:50,:,100:300), got {part!r}")
        bounds = []
        for side in part.split(":"):
            side = side.strip()
            try:
                bounds.append(int(side) if side else None)
            except ValueError:
                raise ConfigError(f"--roi {text!r}: {side!r} is not a whole number") from None
        pairs.append((bounds[0], bounds[1]))
    if len(pairs) not in (2, 3):
        raise ConfigError(f"--roi {text!r}: give 3 ranges k0:k1,j0:j1,i0:i1 for a volume (2 for a 2D image)")
    return pairs


def load_slice_model(
    model: str | Path | StudentPackage,
    *,
    backend: str = "onnx",
    threads: int | None = None,
    device: str | None = None,
) -> SliceModel:
    """A ready model from a package folder, ``.tskd.zip`` or run folder.

    Args:
        model: the package (see :meth:`tskd.runtime.StudentPackage.load`).
        backend: ``"onnx"`` (onnxruntime) or ``"torch"`` (the package's ``student.pt``).
        threads: CPU threads (default: physical cores for onnxruntime, torch's own default for torch).
        device: ``"cpu"`` (default) or ``"cuda"``.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    package = model if isinstance(model, StudentPackage) else StudentPackage.load(model)
    if backend == "onnx":
        return OnnxSegmenter(package, threads=threads, providers=device)
    import torch

    from tskd.inference.torch_model import TorchSliceModel

    if threads is not None:
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        logger.warning("CUDA is not available to torch here; running on the CPU")
        device = "cpu"
    return TorchSliceModel.from_package(package, device=device or "cpu")


def list_inputs(path: str | Path) -> list[Path]:
    """The images to segment: ``path`` itself (a file or DICOM folder) or the images in a folder.

    Raises:
        DataError: nothing to segment there.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"{path}: not found; give an image file, a DICOM folder or a folder of images")
    if path.is_file() or is_image_path(path):
        return [path]
    problems: list[Any] = []
    found = list_images(path, problems)
    for problem in problems:
        logger.info("%s", problem)
    if not found:
        raise DataError(f"{path}: holds no image files or DICOM series folders")
    return found


def _suffix_for(path: Path, fmt: str) -> str:
    if fmt != "same":
        return "." + fmt
    suffix = "" if path.is_dir() else image_suffix(path)
    return _SAME_FALLBACK.get(suffix, suffix)


def output_path_for(image: Path, output: Path, fmt: str, *, single: bool) -> Path:
    """Where the label map of ``image`` goes.

    Args:
        image: the input file or DICOM folder.
        output: an image file name (only for a single input), or a folder.
        fmt: one of :data:`FORMATS`.
        single: whether ``image`` is the only input.

    Raises:
        ConfigError: ``output`` names a file for several inputs, or its suffix contradicts ``fmt``.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    suffix = image_suffix(output) if not output.is_dir() else ""
    if suffix:
        if not single:
            raise ConfigError(f"--output {output}: several inputs need an output folder, not a file name")
        if fmt != "same" and suffix != "." + fmt:
            raise ConfigError(f"--output {output} ends with {suffix} but --format is {fmt}; make them agree")
        if suffix == ".dcm":
            raise ConfigError(f"--output {output}: label maps cannot be written as DICOM; use .nii.gz or .seg.nrrd")
        return output
    return output / (stem_of(image) + _suffix_for(image, fmt))


def _segments(model: SliceModel) -> list[dict[str, Any]]:
    segments = getattr(model, "segments", None)
    if segments is not None:
        return [dict(segment) for segment in segments]
    package = getattr(model, "package", None)
    labels = package.labels if isinstance(package, StudentPackage) else None
    if labels is None:
        return [{"name": f"label_{v}", "label_value": v} for v in model.label_values if v != 0]
    return [{"name": label.name, "label_value": label.value, "color": list(label.color)} for label in labels
            if label.value != 0]


def predict_files(
    model: SliceModel | str | Path,
    inputs: str | Path,
    output: str | Path,
    *,
    format: str = "same",
    batch_size: int = 16,
    backend: str = "onnx",
    roi: Roi | None = None,
    threads: int | None = None,
    on_result: Callable[[int, int, PredictionResult], None] | None = None,
    postprocessing: str | None = None,
) -> list[PredictionResult]:
    """Segment every image of ``inputs`` and write aligned label maps.

    Args:
        model: a ready :class:`~tskd.runtime.SliceModel`, or a package / zip / run folder to load
            with ``backend`` and ``threads``.
        inputs: an image file, a DICOM series folder, or a folder of images.
        output: a label file name (single input only) or a folder (created).
        format: one of :data:`FORMATS` (``same``: the input's format; DICOM becomes ``.nii.gz``,
            JPEG becomes PNG); ``seg.nrrd`` writes Slicer segmentations with the package's names
            and colours.
        batch_size: slices per model call.
        backend: ``"onnx"`` or ``"torch"`` when ``model`` is a path.
        roi: numpy index bounds ``[(k0, k1), (j0, j1), (i0, i1)]`` (None sides: whole axis); only
            that box is segmented, zeros elsewhere.
        threads: CPU threads when loading ``model``.
        on_result: called as ``on_result(position, total, result)`` after each input (1-based).
        postprocessing: ``"none"`` gives the raw arg-max label maps; default the package's choice
            (see :func:`tskd.runtime.segment_volume`).

    Returns:
        One :class:`PredictionResult` per input, in order; failed inputs carry ``error``.

    Raises:
        DataError / ConfigError / PackageError: no inputs, bad output, or an unusable model.
    """
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    slice_model = model if hasattr(model, "logits") else load_slice_model(model, backend=backend, threads=threads)  # type: ignore[arg-type]
    images = list_inputs(inputs)
    output = Path(output).expanduser()
    single = len(images) == 1
    plans = [output_path_for(image, output, format, single=single) for image in images]
    protected = {image.resolve() for image in images}
    written: dict[Path, Path] = {}
    segments = _segments(slice_model)
    results = []
    for position, (image_path, out_path) in enumerate(zip(images, plans), start=1):
        start = time.perf_counter()
        result = PredictionResult(image_path)
        try:
            target = out_path.resolve()
            if target in protected:
                raise DataError(f"{out_path}: is an input image; choose another --output so inputs are never overwritten")
            if target in written:
                raise DataError(f"{out_path}: already written for {written[target].name} (same case name); "
                                "use separate output folders")
            image = read_image(image_path, kind="image")
            result.shape = tuple(image.array.shape)
            try:
                resolve_roi(roi, image.array.shape)
            except ValueError as exc:
                raise DataError(f"{image_path}: --roi does not fit the image of shape {image.array.shape}: {exc}") from None
            labels = segment_volume(slice_model, image.array, batch_size=batch_size, roi=roi,
                                    postprocessing=postprocessing)
            metadata = {"segments": segments} if image_suffix(out_path) == ".seg.nrrd" else {}
            write_image(Image(labels, image.geometry, metadata=metadata), out_path)
            written[target] = image_path
            result.output = out_path
        except TSKDError as exc:
            result.error = str(exc)
            logger.debug("prediction failed for %s", image_path, exc_info=True)
        result.seconds = time.perf_counter() - start
        results.append(result)
        if on_result is not None:
            on_result(position, len(images), result)
    return results
