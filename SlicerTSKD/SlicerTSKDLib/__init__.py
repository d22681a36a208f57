"""Logic and GUI wiring of the SlicerTSKD module, one job per file, grouped by what the user does.

Sub-packages (each ``__init__`` lists its files):

- ``install/``: the backend's Python environment (Python, PyTorch build, pip steps, the marker
  file, the "Backend environment" panel) and ``tskd.runtime`` + onnxruntime inside Slicer.
- ``backend/``: the HTTP client, starting and checking a local ``tskd serve``, the "Backend
  server" panel.
- ``train/``: projects and training cases from the scene, foundation weights, training jobs; the
  "Project and training cases" and "Train" panels.
- ``segment/``: the student in Slicer (model cache, whole volume, live slice, ROI); the "Segment"
  panel.

Shared by them (this folder):

- ``signal``: a tiny signal/slot class so logic reports events without Qt.
- ``settingsStore``: ``qt.QSettings``' two calls on a dictionary, for logic used outside Slicer.
- ``backgroundTasks``: long calls in worker threads, results delivered on the GUI thread.
- ``hostContext``: the machine as the set-up sees it; the child processes' environment.
- ``processRunner``: runs a child process without blocking (``qt.QProcess`` or ``subprocess``).
- ``processTree``: kills a process with everything it started.
- ``volumeFiles``: volume snapshots written to NRRD off the GUI thread.
- ``sceneData``: label maps and volumes between the MRML scene, numpy and files, voxel for voxel.
- ``session``: what the panels share (connection, project, tasks); errors as sentences.
- ``parameterNode``: the module's parameter node.
- ``selfTest``: the checks ``SlicerTSKDTest`` runs inside Slicer.
- ``moduleWidget``: the panels put together, the shared selectors, the task timer.

Logic files have no ``qt``, ``ctk``, ``slicer`` or ``vtk`` imports at module level and are tested
outside Slicer. GUI wiring lives in files named ``*Widget.py``, imported inside Slicer; each panel
gets its logic object in its constructor, and the tests build them on a fake of the Qt calls
(``Testing/fakeQt.py``).

Importing this package (or a sub-package) imports nothing else, so tests can load single modules.
"""

__all__ = ["backend", "install", "segment", "train"]
