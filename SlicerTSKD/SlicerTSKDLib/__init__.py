"""Logic and GUI wiring of the SlicerTSKD module, one job per file.

Logic (no ``qt``, ``ctk``, ``slicer`` or ``vtk`` imports at module level; tested outside Slicer):

- ``signal``: a tiny signal/slot class so logic reports events without Qt.
- ``client``: the backend service's HTTP client (standard library only; see docs/service-api.md).
- ``processRunner``: runs a child process without blocking (``qt.QProcess`` or ``subprocess``).
- ``processTree``: kills a process with everything it started.
- ``hostContext``: the machine as the set-up sees it; the child processes' environment.
- ``pythonFinder``: finding a Python 3.10-3.13 to base the backend environment on.
- ``torchSelection``: CUDA or CPU PyTorch build, from ``nvidia-smi``.
- ``environment``: planning the backend environment (options, commands, paths).
- ``environmentMarker``: the "environment ready" marker file.
- ``pipProgress``: progress estimate from pip's output.
- ``stepSequence``: runs a list of commands one at a time, event driven (cancel, log, progress).
- ``environmentSetup``: the set-up itself, on ``stepSequence``.

GUI wiring (files named ``*Widget.py``, imported only inside Slicer):

- ``installWidget``: the "Set up local backend" panel.

Importing this package imports nothing else, so tests can load single modules.
"""

__all__ = [
    "client",
    "environment",
    "environmentMarker",
    "environmentSetup",
    "hostContext",
    "installWidget",
    "pipProgress",
    "processRunner",
    "processTree",
    "pythonFinder",
    "signal",
    "stepSequence",
    "torchSelection",
]
