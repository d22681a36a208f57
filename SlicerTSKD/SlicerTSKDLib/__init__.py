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
- ``installLogic``: ``EnvironmentPanelLogic``, the "Backend environment" panel's decisions (remembered
  choices, options, status lines, which buttons apply, the current set-up).
- ``backgroundTasks``: long calls in worker threads, results delivered on the GUI thread.
- ``settingsStore``: ``qt.QSettings``' two calls on a dictionary, for logic used outside Slicer.
- ``backendLogic``: starting a local ``tskd serve``, checking a backend, connection errors in plain
  words; ``BackendLogic``, the "Backend server" panel's decisions.
- ``session``: what the panels share (connection, project, tasks); errors as sentences.
- ``sceneData``: label maps and volumes between the MRML scene, numpy and files, voxel for voxel.
- ``projectLogic``: project labels from segments, training cases from the scene; ``ProjectLogic``,
  the project panel's decisions.
- ``trainingLogic``: quality -> preset, job status -> what the panel shows; ``TrainingLogic``, the
  Train panel's state and decisions.
- ``runtimeSetup``: ``tskd.runtime`` and onnxruntime inside Slicer.
- ``segmentationLogic``: the student in Slicer: model cache, whole volume, live slice, ROI.
- ``selfTest``: the checks ``SlicerTSKDTest`` runs inside Slicer.

GUI wiring (files named ``*Widget.py``, imported inside Slicer; each panel gets its logic object
in its constructor, and the tests build them on a fake of the Qt calls, ``Testing/fakeQt.py``):

- ``moduleWidget``: the panels put together, the shared selectors, the task timer.
- ``installWidget``: the "Backend environment" panel (set up the backend's environment, or use one).
- ``backendWidget``: the "Backend server" panel.
- ``projectWidget``: the "Project and training cases" panel.
- ``trainingWidget``: the "Train" panel.
- ``segmentationWidget``: the "Segment" panel.

Importing this package imports nothing else, so tests can load single modules.
"""

__all__ = [
    "backendLogic",
    "backendWidget",
    "backgroundTasks",
    "client",
    "environment",
    "environmentMarker",
    "environmentSetup",
    "hostContext",
    "installLogic",
    "installWidget",
    "moduleWidget",
    "pipProgress",
    "processRunner",
    "processTree",
    "projectLogic",
    "projectWidget",
    "pythonFinder",
    "runtimeSetup",
    "sceneData",
    "segmentationLogic",
    "segmentationWidget",
    "selfTest",
    "session",
    "settingsStore",
    "signal",
    "stepSequence",
    "torchSelection",
    "trainingLogic",
    "trainingWidget",
]
