"""Box-to-mask with an exported SAM-family model (LiteMedSAM or a run's fine-tuned teacher) on onnxruntime.

An exported box model is a folder of three files (written by :func:`tskd.export.export_box_model`):

* ``box_encoder.onnx``: ``pixels`` ``(1, 1, S, S)`` float32 (the image scaled to ``[0, 1]``,
  longest side ``S``, zero padding: :func:`tskd.preprocess.prompt.prompt_input`) -> ``embeddings``
  ``(1, C, G, G)``;
* ``box_decoder.onnx``: ``embeddings`` and ``boxes`` ``(N, 4)`` (``x1, y1, x2, y2`` in input pixels)
  -> ``logits`` ``(N, S, S)`` (SAM's single-mask output per box, foreground where > 0);
* ``box_model.json``: what it is (format, model name, architecture, checkpoint SHA-256, input size,
  preprocessing ``minmax-longest-side-pad``, tensor names).

:class:`OnnxBoxPredictor` has the interface of the backend's torch ``BoxPredictor``: ``set_image``
runs the encoder once, ``predict(box)`` only the decoder, so moving a box costs tens of milliseconds.

Standard library, numpy and onnxruntime only (imported when a predictor is made), Python 3.9 syntax:
shipped into Slicer.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from ..errors import CheckpointError
from ..preprocess.prompt import PromptFrame, box_to_input, mask_from_logits, prompt_input
from .package import PackageError

__all__ = [
    "BOX_FORMAT_NAME",
    "BOX_FORMAT_VERSION",
    "BOX_METADATA_NAME",
    "BOX_MODEL_FOLDER",
    "ENCODER_NAME",
    "DECODER_NAME",
    "PREPROCESSING",
    "BoxModelInfo",
    "OnnxBoxPredictor",
    "find_box_model",
    "unpack_box_model",
]

logger = logging.getLogger(__name__)

BOX_FORMAT_NAME = "tskd-box-model"
BOX_FORMAT_VERSION = 1
BOX_METADATA_NAME = "box_model.json"
ENCODER_NAME = "box_encoder.onnx"
DECODER_NAME = "box_decoder.onnx"
#: where a run's package keeps its teacher's box model (``<run>/package/box_model/``)
BOX_MODEL_FOLDER = "box_model"
PREPROCESSING = "minmax-longest-side-pad"
ENCODER_INPUT = "pixels"
EMBEDDINGS = "embeddings"
BOXES = "boxes"
LOGITS = "logits"

PathLike = Union[str, "os.PathLike[str]"]


def find_box_model(path: PathLike) -> Path:
    """The box-model folder for ``path``: the folder itself, ``path/box_model`` (a package) or
    ``path/package/box_model`` (a run).

    Raises:
        PackageError: none of them holds a ``box_model.json``.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise PackageError(f"{path}: not found; give an exported box model folder or a run folder")
    if not path.is_dir():
        raise PackageError(f"{path}: not a folder; give an exported box model folder or a run folder")
    for candidate in (path, path / BOX_MODEL_FOLDER, path / "package" / BOX_MODEL_FOLDER):
        if (candidate / BOX_METADATA_NAME).is_file():
            return candidate
    raise PackageError(
        f"{path}: no exported box model ({BOX_METADATA_NAME} with {ENCODER_NAME} and {DECODER_NAME}) here, in "
        f"{BOX_MODEL_FOLDER}/ or in package/{BOX_MODEL_FOLDER}/; this run's package has no exported teacher "
        "graphs, so use the zero-shot model (litemedsam) for now"
    )


def unpack_box_model(path: PathLike, folder: PathLike) -> "BoxModelInfo":
    """Unpack a box model's zip (what the backend's box-model routes send) safely into ``folder``.

    The zip is checked as a student package's is (:func:`tskd.runtime.archive.unpack_zip`: no absolute
    paths, ``..`` or links; ``box_model.json`` at its top or in one folder), unpacked next to
    ``folder`` under a temporary name, checked (:meth:`BoxModelInfo.load`) and only then renamed to
    ``folder`` (replacing an older copy), so ``folder`` never holds half a model.

    Raises:
        PackageError: not a zip, unsafe, or not a complete box model.
    """
    from .archive import unpack_zip

    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".{}.".format(folder.name), dir=str(folder.parent)))
    try:
        unpacked = unpack_zip(path, cache_dir=staging, metadata_name=BOX_METADATA_NAME)
        BoxModelInfo.load(unpacked)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(unpacked, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("unpacked the box model %s into %s", path, folder)
    return BoxModelInfo.load(folder)


class BoxModelInfo:
    """The metadata of an exported box model, checked field by field.

    Attributes:
        folder: the folder holding the three files.
        model: a readable name (``litemedsam``, or the run's name).
        architecture: the teacher registry's name (``litemedsam``).
        checkpoint_sha256: SHA-256 of the weights the graphs were exported from.
        input_size: ``S``.
        embedding_shape: ``(C, G, G)``.
        preprocessing: always :data:`PREPROCESSING` in this version.
        extra: every other field, as written.
    """

    def __init__(self, folder: Path, data: Dict[str, Any]) -> None:
        where = str(folder / BOX_METADATA_NAME)
        if not isinstance(data, dict):
            raise PackageError(f"{where}: expected a JSON object")
        if data.get("format") != BOX_FORMAT_NAME:
            raise PackageError(f"{where}: 'format' is {data.get('format')!r}, not {BOX_FORMAT_NAME!r}; "
                               "this is not an exported box model")
        version = data.get("format_version")
        if not isinstance(version, int) or version > BOX_FORMAT_VERSION:
            raise PackageError(f"{where}: 'format_version' {version!r} is newer than this version understands "
                               f"({BOX_FORMAT_VERSION}); update tskd or export the model again")
        if data.get("preprocessing") != PREPROCESSING:
            raise PackageError(f"{where}: 'preprocessing' is {data.get('preprocessing')!r}; only "
                               f"{PREPROCESSING!r} is known")
        size = data.get("input_size")
        if isinstance(size, bool) or not isinstance(size, int) or size < 16:
            raise PackageError(f"{where}: 'input_size' must be a whole number >= 16, got {size!r}")
        shape = data.get("embedding_shape")
        if not (isinstance(shape, list) and len(shape) == 3 and all(isinstance(v, int) and v > 0 for v in shape)):
            raise PackageError(f"{where}: 'embedding_shape' must be three positive whole numbers, got {shape!r}")
        sha = data.get("checkpoint_sha256")
        if not (isinstance(sha, str) and len(sha) == 64):
            raise PackageError(f"{where}: 'checkpoint_sha256' must be 64 hex digits, got {sha!r}")
        self.folder = folder
        self.model = str(data.get("model") or "")
        self.architecture = str(data.get("architecture") or "")
        self.checkpoint_sha256 = sha
        self.input_size = int(size)
        self.embedding_shape = tuple(int(v) for v in shape)
        self.preprocessing = PREPROCESSING
        self.extra = dict(data)

    @property
    def encoder_path(self) -> Path:
        return self.folder / ENCODER_NAME

    @property
    def decoder_path(self) -> Path:
        return self.folder / DECODER_NAME

    @classmethod
    def load(cls, path: PathLike) -> "BoxModelInfo":
        """Read and check ``box_model.json`` of the folder :func:`find_box_model` finds for ``path``."""
        folder = find_box_model(path)
        meta = folder / BOX_METADATA_NAME
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise PackageError(f"{meta}: cannot be read as JSON ({exc}); export the model again") from None
        info = cls(folder, data)
        for graph in (info.encoder_path, info.decoder_path):
            if not graph.is_file():
                raise PackageError(f"{graph}: missing; the box model is incomplete (export it again)")
        return info

    def __repr__(self) -> str:
        return f"BoxModelInfo({self.model or self.architecture!r}, {self.input_size}px, {self.folder})"


class OnnxBoxPredictor:
    """Masks from boxes on one 2D image at a time, with an exported box model on onnxruntime.

    Args:
        model: a :class:`BoxModelInfo`, or a path :func:`find_box_model` accepts.
        threads: CPU threads for onnxruntime (default: :func:`~.session.default_threads`).
        providers: execution providers (see :func:`tskd.runtime.resolve_providers`); default the CPU.
        encoder_path: another encoder graph with the same inputs and outputs (e.g. a quantised copy);
            default the model's own.

    Raises:
        PackageError: the model is incomplete or its graphs do not match its metadata.
    """

    def __init__(
        self,
        model: Union[BoxModelInfo, PathLike],
        *,
        threads: Optional[int] = None,
        providers: Optional[Union[str, Sequence[str]]] = None,
        encoder_path: Optional[PathLike] = None,
        decoder_path: Optional[PathLike] = None,
    ) -> None:
        import onnxruntime as ort

        from .session import default_threads, resolve_providers

        self.info = model if isinstance(model, BoxModelInfo) else BoxModelInfo.load(model)
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = int(threads) if threads is not None else default_threads()
        self.providers = resolve_providers(providers)
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.encoder_path = Path(encoder_path) if encoder_path is not None else self.info.encoder_path
        self.decoder_path = Path(decoder_path) if decoder_path is not None else self.info.decoder_path
        self._encoder = self._session(ort, self.encoder_path, options)
        self._decoder = self._session(ort, self.decoder_path, options)
        self._check_graphs()
        self._embedding = None  # type: Optional[np.ndarray]
        self._frame = None  # type: Optional[PromptFrame]
        logger.info("loaded box model %s on %s with %d threads", self.info.folder, self.providers[0], self.threads)

    def _session(self, ort: Any, path: Path, options: Any) -> Any:
        try:
            return ort.InferenceSession(str(path), sess_options=options, providers=self.providers)
        except Exception as exc:  # onnxruntime raises its own exception types for damaged graphs
            raise PackageError(f"{path}: onnxruntime cannot load the graph ({str(exc).splitlines()[0]}); "
                               "export the box model again") from None

    def _check_graphs(self) -> None:
        size = self.info.input_size
        inputs = {i.name: list(i.shape) for i in self._encoder.get_inputs()}
        if inputs.get(ENCODER_INPUT) != [1, 1, size, size]:
            raise PackageError(f"{self.encoder_path}: the encoder's inputs are {inputs}, not {ENCODER_INPUT} "
                               f"[1, 1, {size}, {size}] as {BOX_METADATA_NAME} says; export the box model again")
        names = {i.name for i in self._decoder.get_inputs()}
        if names != {EMBEDDINGS, BOXES}:
            raise PackageError(f"{self.decoder_path}: the decoder's inputs are {sorted(names)}, not "
                               f"['{BOXES}', '{EMBEDDINGS}']; export the box model again")

    @property
    def input_size(self) -> int:
        return self.info.input_size

    @property
    def embedding(self) -> Optional[np.ndarray]:
        """The current image's embedding ``(1, C, G, G)`` (``None`` before :meth:`set_image`)."""
        return self._embedding

    def encode(self, pixels: np.ndarray) -> np.ndarray:
        """The encoder's embedding ``(1, C, G, G)`` of model input ``(S, S)`` or ``(1, 1, S, S)`` in ``[0, 1]``."""
        size = self.input_size
        batch = np.ascontiguousarray(np.asarray(pixels, dtype=np.float32).reshape(1, 1, size, size))
        try:
            (out,) = self._encoder.run([EMBEDDINGS], {ENCODER_INPUT: batch})
        except Exception as exc:
            raise CheckpointError(f"{self.encoder_path}: onnxruntime failed: {str(exc).splitlines()[0]}") from None
        return out

    def set_image(self, image: np.ndarray) -> None:
        """Encode a 2D image ``(H, W)`` (any real dtype); later boxes refer to its pixels."""
        pixels, frame = prompt_input(image, self.input_size)
        self.set_encoded(self.encode(pixels), frame)

    def set_encoded(self, embedding: np.ndarray, frame: PromptFrame) -> None:
        """Use an embedding kept from an earlier :meth:`encode` (e.g. of a slice seen before) and its frame."""
        expected = (1,) + tuple(self.info.embedding_shape)
        if tuple(np.shape(embedding)) != expected:
            raise ValueError(f"expected an embedding of shape {expected}, got {np.shape(embedding)}")
        self._embedding = np.ascontiguousarray(embedding, dtype=np.float32)
        self._frame = frame

    @property
    def frame(self) -> Optional[PromptFrame]:
        """Where the current image sits in the model's input (``None`` before :meth:`set_image`)."""
        return self._frame

    def predict_logits(self, boxes: Sequence[Sequence[float]]) -> np.ndarray:
        """Input-frame logits ``(N, S, S)`` for ``N`` boxes ``x1, y1, x2, y2`` in the image's pixels."""
        if self._embedding is None or self._frame is None:
            raise RuntimeError("call set_image before predict")
        scaled = np.stack([box_to_input(self._frame, box) for box in boxes]).astype(np.float32)
        try:
            (out,) = self._decoder.run([LOGITS], {EMBEDDINGS: self._embedding, BOXES: scaled})
        except Exception as exc:
            raise CheckpointError(f"{self.decoder_path}: onnxruntime failed: {str(exc).splitlines()[0]}") from None
        return out

    def predict(self, box: Sequence[float]) -> np.ndarray:
        """The mask ``(H, W)`` bool of one box ``x1, y1, x2, y2`` (``x`` along the image's last axis)."""
        return mask_from_logits(self._frame, self.predict_logits([box])[0])  # type: ignore[arg-type]

    def predict_many(self, boxes: Sequence[Sequence[float]]) -> List[np.ndarray]:
        """One mask per box, decoded together."""
        return [mask_from_logits(self._frame, logits) for logits in self.predict_logits(boxes)]  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"OnnxBoxPredictor({self.info!r}, providers={self.providers}, threads={self.threads})"
