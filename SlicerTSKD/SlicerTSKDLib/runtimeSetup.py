"""Making the student runtime (``tskd.runtime``) usable inside Slicer's own Python.

The backend's sources ship inside the extension (``SlicerTSKDBackend/src``, see
:func:`SlicerTSKDLib.environment.findBackendSource`). Only the light, numpy-only part of them is
imported into Slicer: ``tskd`` (its ``__init__`` only sets the version), ``tskd.errors``,
``tskd.preprocess`` and ``tskd.runtime``; never the training code (torch, MONAI...), which lives in
the backend's own environment. :func:`ensureRuntimeImportable` puts the ``src`` folder on
``sys.path``.

``tskd.runtime`` needs ``onnxruntime`` to run a model. It is not part of Slicer, so it is never
imported when the module loads: :func:`onnxruntimeAvailable` only looks for it, and the widget asks
the user before installing it with ``slicer.util.pip_install`` (:func:`installOnnxruntime`). When it
cannot be had, segmentation runs on the backend (``client.predict``).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import sys
from typing import Callable, Optional

from .environment import findBackendSource

__all__ = [
    "RUNTIME_MODULES",
    "RuntimeSetupError",
    "runtimeSourceFolder",
    "ensureRuntimeImportable",
    "onnxruntimeAvailable",
    "installOnnxruntime",
    "ONNXRUNTIME_REQUIREMENT",
]

logger = logging.getLogger(__name__)

#: The backend modules imported into Slicer (numpy only; onnxruntime when a model is loaded).
RUNTIME_MODULES = ("tskd", "tskd.errors", "tskd.preprocess", "tskd.runtime")

#: What ``pip_install`` installs.
ONNXRUNTIME_REQUIREMENT = "onnxruntime"


class RuntimeSetupError(Exception):
    """The runtime cannot be used inside Slicer; the message says what to do."""


def runtimeSourceFolder(moduleDir: str) -> Optional[str]:
    """The backend's ``src`` folder shipped next to the module (None when missing)."""
    backend = findBackendSource(moduleDir)
    return os.path.join(backend, "src") if backend else None


def ensureRuntimeImportable(moduleDir: str) -> str:
    """Make ``tskd.runtime`` importable (adds the shipped ``src`` folder to ``sys.path``) and import it.

    Args:
        moduleDir: folder of ``SlicerTSKD.py``.

    Returns:
        The folder ``tskd`` is imported from.

    Raises:
        RuntimeSetupError: the sources are missing or do not import.
    """
    source = runtimeSourceFolder(moduleDir)
    if source is None and importlib.util.find_spec("tskd") is None:
        raise RuntimeSetupError("The backend sources are missing from this SlicerTSKD extension: reinstall the extension.")
    if source is not None and source not in sys.path:
        sys.path.insert(0, source)
        importlib.invalidate_caches()
    try:
        for name in RUNTIME_MODULES:
            importlib.import_module(name)
    except Exception as exc:
        raise RuntimeSetupError("The student runtime (tskd.runtime) does not load from {}: {}".format(source, exc)) from None
    tskd = sys.modules["tskd"]
    return os.path.dirname(os.path.dirname(os.path.abspath(tskd.__file__)))


def onnxruntimeAvailable() -> bool:
    """True when ``onnxruntime`` can be imported (it is looked for, not imported)."""
    importlib.invalidate_caches()
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def installOnnxruntime(pipInstall: Callable[[str], object]) -> bool:
    """Install onnxruntime with ``pipInstall`` (``slicer.util.pip_install``); True when it imports afterwards.

    Failures (offline, no wheel for this platform) are logged and give False: the caller then
    segments on the backend instead.
    """
    try:
        pipInstall(ONNXRUNTIME_REQUIREMENT)
    except Exception as exc:  # pip's failures come as CalledProcessError, OSError...
        logger.warning("installing %s failed: %s", ONNXRUNTIME_REQUIREMENT, exc)
        return False
    if not onnxruntimeAvailable():
        return False
    try:
        importlib.import_module("onnxruntime")
    except Exception as exc:
        logger.warning("onnxruntime was installed but does not load: %s", exc)
        return False
    return True
