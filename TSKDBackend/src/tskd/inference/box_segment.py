"""Box-to-mask on image files (``tskd segment-box``): a box on a 2D image, or on one slice of a volume
(optionally propagated through its neighbours), written as a label file aligned with the image.

The model is the zero-shot LiteMedSAM (``litemedsam``, or any foundation weights name or checkpoint
path that loads as a SAM-family segmenter) or an exported box model folder / a run whose package holds
one (``<run>/package/box_model/``). With the ONNX backend, the foundation weights are exported once
into ``$TSKD_HOME/box_models/<name>-<sha256[:12]>/`` and reused; the torch backend runs the weights
directly. The slice work is :mod:`tskd.runtime.box_propagation`, shared with the Slicer module.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tskd.data.image import Image, image_suffix, read_image, write_image
from tskd.errors import ConfigError, DataError
from tskd.runtime.box_model import BOX_METADATA_NAME, OnnxBoxPredictor, find_box_model
from tskd.runtime.box_propagation import PropagationSettings, check_box, propagate_box, segment_slice

__all__ = [
    "BACKENDS",
    "LABEL_VALUE",
    "BoxSegmentResult",
    "parse_box",
    "zero_shot_box_model",
    "load_box_predictor",
    "check_request",
    "segment_box_array",
    "segment_box_file",
]

logger = logging.getLogger(__name__)

BACKENDS = ("onnx", "torch")
LABEL_VALUE = 1


def parse_box(text: str) -> tuple[float, float, float, float]:
    """``"x1,y1,x2,y2"`` as four numbers (any order of corners is not accepted: ``x1 < x2``, ``y1 < y2``).

    Raises:
        ConfigError: not four comma-separated numbers.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4 or not all(np.isfinite(values)):
        raise ConfigError(f"--box {text!r}: expected four numbers x1,y1,x2,y2 in pixels (x along the image's "
                          "columns), e.g. --box 120,80,260,210")
    return values[0], values[1], values[2], values[3]


def _is_weights(model: str) -> bool:
    """Whether ``model`` names foundation weights (a catalog / imported name, or a checkpoint file)."""
    from tskd.foundation.resolve import is_weights_name

    path = Path(model).expanduser()
    if path.is_file():
        return True
    if path.exists():
        return False
    return is_weights_name(model)


def zero_shot_box_model(model: str, cache_dir: str | Path | None = None, *, name: str | None = None) -> Path:
    """The exported box model of foundation weights (a name such as ``litemedsam``, or a checkpoint
    path), exported into ``cache_dir`` (default ``$TSKD_HOME/box_models``) on first use, as
    ``<name>-<sha256[:12]>/``; ``name`` defaults to the weights name or the file's stem (the service
    passes its own name for the file it resolved).

    Raises:
        ConfigError: the weights are not here (the message says how to get them).
        CheckpointError: the file is not a SAM-family checkpoint.
    """
    from tskd.foundation.cache import tskd_home
    from tskd.foundation.resolve import resolve_base
    from tskd.teacher.digest import file_sha256

    path = Path(resolve_base(model) or model).expanduser()
    if not path.is_file():
        raise ConfigError(f"{model}: no such weights file; 'tskd foundation get litemedsam' downloads LiteMedSAM")
    sha = file_sha256(path)
    name = name or (Path(model).stem if Path(model).expanduser().is_file() else model)
    cache = Path(cache_dir) if cache_dir is not None else tskd_home() / "box_models"
    folder = cache / f"{name}-{sha[:12]}"
    if (folder / BOX_METADATA_NAME).is_file():
        return folder
    from tskd.atomic import replace_folder
    from tskd.export.box_export import export_box_model, verify_on_pattern
    from tskd.teacher.checkpoints import load_pretrained_segmenter

    logger.info("exporting %s to ONNX once (about a minute on two cores) into %s", name, folder)
    segmenter = load_pretrained_segmenter(path, architecture="auto", input_size=256, num_classes=2)
    cache.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=cache))
    try:
        export_box_model(segmenter, work, name=name)
        verify_on_pattern(segmenter, work)
        replace_folder(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def load_box_predictor(model: str | Path, *, backend: str = "onnx", threads: int | None = None,
                       cache_dir: str | Path | None = None) -> Any:
    """A predictor (``set_image`` / ``predict``) for ``model``.

    Args:
        model: ``litemedsam`` (or other foundation weights: a name or a checkpoint file), an exported
            box model folder, or a run folder whose package holds one.
        backend: ``onnx`` (default) or ``torch`` (foundation weights only).
        threads: CPU threads (default: physical cores).
        cache_dir: where foundation weights are exported (see :func:`zero_shot_box_model`).

    Raises:
        ConfigError / CheckpointError: unknown backend, weights absent, no exported box model in a run.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    text = str(model)
    if _is_weights(text):
        if backend == "onnx":
            return OnnxBoxPredictor(zero_shot_box_model(text, cache_dir), threads=threads)
        import torch

        from tskd.foundation.resolve import resolve_base
        from tskd.teacher.checkpoints import load_pretrained_segmenter
        from tskd.teacher.prompted import BoxPredictor

        if threads is not None:
            torch.set_num_threads(threads)
        path = resolve_base(text) or text
        return BoxPredictor(load_pretrained_segmenter(path, architecture="auto", input_size=256, num_classes=2))
    if backend != "onnx":
        raise ConfigError(f"{model}: an exported box model runs on onnxruntime only; use the onnx backend")
    return OnnxBoxPredictor(find_box_model(model), threads=threads)


@dataclass
class BoxSegmentResult:
    """What :func:`segment_box_file` wrote.

    Attributes:
        output: the label file.
        shape: the image's array shape.
        pixels: foreground pixels (voxels) written.
        slices: the slices that got a mask (3D), in the order segmented; ``[]`` for a 2D image.
        stopped: why propagation stopped in each direction (3D with propagation).
        seconds: wall time.
    """

    output: Path
    shape: tuple[int, ...]
    pixels: int
    slices: list[int] = field(default_factory=list)
    stopped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def check_request(shape: Sequence[int], box: Sequence[float], *, slice_index: int | None = None, axis: int = 0,
                  propagate: bool = False) -> None:
    """Check a box request against an image's array shape before any model is loaded.

    Raises:
        ConfigError: the options do not fit the image's dimension, or the box is malformed or empty.
        DataError: the slice is out of range, or the box lies outside the image.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) == 2:
        if slice_index is not None or propagate:
            raise ConfigError("--slice and --propagate are for 3D images; this image is 2D")
        _checked(box, shape[0], shape[1])
        return
    if len(shape) != 3:
        raise DataError(f"expected a 2D or 3D image, got {len(shape)} dimensions {shape}")
    if slice_index is None:
        raise ConfigError(f"a 3D image ({'x'.join(map(str, shape))}) needs --slice K: the slice the box is on")
    if not 0 <= axis <= 2:
        raise ConfigError(f"--axis must be 0, 1 or 2 (numpy axis of the volume), got {axis}")
    count = shape[axis]
    if not 0 <= slice_index < count:
        raise DataError(f"--slice {slice_index} is outside the image: axis {axis} has slices 0 to {count - 1}")
    plane = [n for a, n in enumerate(shape) if a != axis]
    _checked(box, plane[0], plane[1])


def segment_box_array(
    predictor: Any,
    array: np.ndarray,
    box: Sequence[float],
    *,
    slice_index: int | None = None,
    axis: int = 0,
    propagate: bool = False,
    settings: PropagationSettings | None = None,
) -> tuple[np.ndarray, list[int], dict[str, str]]:
    """The bool mask of ``array`` (2D, or 3D with ``slice_index``) from a box; see :func:`segment_box_file`.

    Returns:
        the mask (``array``'s shape), the slices segmented (3D) and why propagation stopped.

    Raises:
        ConfigError / DataError: see :func:`check_request`.
    """
    array = np.asarray(array)
    check_request(array.shape, box, slice_index=slice_index, axis=axis, propagate=propagate)
    if array.ndim == 2:
        predictor.set_image(array)
        return predictor.predict(box), [], {}
    assert slice_index is not None  # checked above
    if not propagate:
        return segment_slice(predictor, array, box, slice_index, axis), [slice_index], {}
    result = propagate_box(predictor, array, box, slice_index, axis, settings=settings)
    return result.mask, result.slices, result.stopped


def _checked(box: Sequence[float], height: int, width: int) -> None:
    try:
        check_box(box, height, width)
    except ValueError as exc:
        kind = DataError if "outside" in str(exc) else ConfigError
        raise kind(f"--box: {exc}") from None


def segment_box_file(
    model: Any,
    image: str | Path,
    box: Sequence[float],
    output: str | Path,
    *,
    slice_index: int | None = None,
    axis: int = 0,
    propagate: bool = False,
    backend: str = "onnx",
    threads: int | None = None,
    settings: PropagationSettings | None = None,
) -> BoxSegmentResult:
    """Segment the object in a box on ``image`` and write an aligned label file (1 inside, 0 outside).

    Args:
        model: a ready predictor, or what :func:`load_box_predictor` accepts.
        image: a 2D or 3D image file (or DICOM series folder) the data layer reads.
        box: ``x1, y1, x2, y2`` in pixels of the 2D image or of slice ``slice_index``: ``x`` along the
            slice's last numpy axis (the image's columns), ``y`` along its first.
        output: the label file (its suffix gives the format); never the input.
        slice_index, axis: for a 3D image, the slice the box is on and the numpy axis it is taken along.
        propagate: 3D: continue into the neighbouring slices (:func:`tskd.runtime.box_propagation.propagate_box`).
        backend, threads: when ``model`` is not a ready predictor.
        settings: propagation margins and stopping rules.

    Raises:
        DataError / ConfigError / CheckpointError: bad image, box, slice or model (nothing is written).
    """
    start = time.perf_counter()
    image_path, out_path = Path(image), Path(output)
    if not image_suffix(out_path) or image_suffix(out_path) == ".dcm":
        raise ConfigError(f"{out_path}: unknown label file format; use .nii.gz, .nrrd, .seg.nrrd, .mha or .png")
    if out_path.exists() and image_path.exists() and out_path.resolve() == image_path.resolve():
        raise DataError(f"{out_path}: is the input image; choose another --output so the image is never overwritten")
    picture = read_image(image_path, kind="image")
    check_request(picture.array.shape, box, slice_index=slice_index, axis=axis, propagate=propagate)
    predictor = model if hasattr(model, "set_image") else load_box_predictor(model, backend=backend, threads=threads)
    mask, slices, stopped = segment_box_array(predictor, picture.array, box, slice_index=slice_index, axis=axis,
                                              propagate=propagate, settings=settings)
    labels = mask.astype(np.uint8) * np.uint8(LABEL_VALUE)
    metadata = {}
    if image_suffix(out_path) == ".seg.nrrd":
        metadata = {"segments": [{"name": "box", "label_value": LABEL_VALUE, "color": [0.9, 0.6, 0.2]}]}
    try:
        write_image(Image(labels, picture.geometry, metadata=metadata), out_path)
    except OSError as exc:
        raise DataError(f"{out_path}: cannot be written ({exc.strerror or exc})") from None
    return BoxSegmentResult(output=out_path, shape=tuple(picture.array.shape), pixels=int(mask.sum()),
                            slices=slices, stopped=stopped, seconds=time.perf_counter() - start)

