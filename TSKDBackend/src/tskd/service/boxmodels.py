"""Box models for the Slicer module's box-to-mask tool: ONNX graphs served as a zip.

A box model is the folder :func:`tskd.export.export_box_model` writes (``box_encoder.onnx``,
``box_decoder.onnx``, ``box_model.json``; format in :mod:`tskd.runtime.box_model`). Two kinds are
served:

* **zero-shot**, from foundation weights the server has (``GET /checkpoints/{name}/box-model``):
  exported once into ``<workspace>/box_models/<name>-<sha256[:12]>/`` by
  :func:`tskd.inference.box_segment.zero_shot_box_model` (the same export ``tskd segment-box``
  makes; checked against torch) and reused while the weights keep their hash;
* **task-tuned**, a finished model's own (``GET /models/{id}/box-model``): the ``box_model/``
  folder of its run's package, when the run exported its fine-tuned teacher there; a model
  without one answers 404 saying to use the zero-shot model.

Each folder is zipped once (stored, not deflated: ONNX weights hardly compress) next to it and
zipped again only when a file of the folder is newer than the zip. The model listing says which
models have one (:func:`box_model_summary`, ``ModelOut.box_model``). A model's box model is never in
its student ``.tskd.zip`` (:meth:`tskd.service.registry.Models.archive` leaves ``box_model/`` out):
the student stays small and the box model is fetched only by who uses it.
"""

from __future__ import annotations

import logging
import threading
import zipfile
from pathlib import Path
from typing import Any

from tskd.runtime.box_model import BOX_METADATA_NAME, BOX_MODEL_FOLDER, BoxModelInfo
from tskd.runtime.package import PackageError
from tskd.service.checkpoints import Checkpoints
from tskd.service.errors import NotFound
from tskd.service.storage import Workspace, zip_folder

__all__ = ["BoxModels", "box_model_summary", "ZERO_SHOT_HINT"]

logger = logging.getLogger(__name__)

#: What a client is told to use when a model has no task-tuned box model.
ZERO_SHOT_HINT = "use the zero-shot foundation model instead (GET /api/v1/checkpoints/litemedsam/box-model)"


def box_model_summary(package: Path) -> dict[str, Any] | None:
    """``{model, architecture, checkpoint_sha256, input_size, size_bytes}`` of a package's
    ``box_model/`` folder; None when it has none, or an incomplete one (logged)."""
    folder = package / BOX_MODEL_FOLDER
    if not (folder / BOX_METADATA_NAME).is_file():
        return None
    try:
        info = BoxModelInfo.load(folder)
    except PackageError as exc:
        logger.warning("%s: not offered as a box model: %s", folder, exc)
        return None
    size = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
    return {"model": info.model, "architecture": info.architecture, "checkpoint_sha256": info.checkpoint_sha256,
            "input_size": info.input_size, "size_bytes": size}


class BoxModels:
    """The box models of one server.

    Args:
        workspace: where zero-shot exports are kept (``box_models/``).
        checkpoints: the server's foundation weights.
        models: the model registry (:class:`tskd.service.registry.Models`, which imports this module for
            :func:`box_model_summary`): its ``package_dir(model_id)``.
    """

    def __init__(self, workspace: Workspace, checkpoints: Checkpoints, models: Any) -> None:
        self.ws = workspace
        self.checkpoints = checkpoints
        self.models = models
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def foundation_archive(self, name: str) -> Path:
        """The zip of foundation weights ``name`` exported as a box model (exported on first use: about
        10-60 s on two cores for LiteMedSAM; a second request waits for the first).

        Raises:
            ServiceError: 404 no checkpoint of that name; 409 the weights are not on the server yet.
            TSKDError: 422 the weights are not a SAM-family checkpoint, or the export disagrees with torch.
        """
        self.checkpoints.get(name)  # 404 for a name the server does not know
        base = self.checkpoints.resolve(name)  # 409 when not downloaded yet, or changed since recorded
        if base.path is None:
            raise NotFound(f"{name!r} is not a foundation model; GET /api/v1/checkpoints lists them")
        from tskd.inference.box_segment import zero_shot_box_model

        with self._lock("checkpoint:" + name):
            folder = zero_shot_box_model(str(base.path), cache_dir=self.ws.box_models_dir, name=name)
            return _zipped(folder, folder.with_name(folder.name + ".zip"))

    def model_archive(self, model_id: str) -> Path:
        """The zip of a finished model's task-tuned box model (its package's ``box_model/``).

        Raises:
            ServiceError: 404 no such model, or it has no (complete) box model.
        """
        package = self.models.package_dir(model_id)
        folder = package / BOX_MODEL_FOLDER
        if not (folder / BOX_METADATA_NAME).is_file():
            raise NotFound(f"model {model_id} has no task-tuned box model (its run did not export its teacher's "
                           f"graphs); {ZERO_SHOT_HINT}")
        try:
            BoxModelInfo.load(folder)
        except PackageError as exc:
            raise NotFound(f"model {model_id}'s box model is incomplete ({exc}); {ZERO_SHOT_HINT}") from None
        with self._lock("model:" + model_id):
            return _zipped(folder, package.parent / (BOX_MODEL_FOLDER + ".zip"))


def _zipped(folder: Path, target: Path) -> Path:
    """``target``, the zip of ``folder``'s files (``box_model.json`` at its top), made again when older
    than any of them."""
    newest = max(path.stat().st_mtime for path in folder.iterdir() if path.is_file())
    if not target.is_file() or target.stat().st_mtime < newest:
        zip_folder(folder, target, compression=zipfile.ZIP_STORED)
        logger.info("zipped the box model %s into %s", folder, target)
    return target
