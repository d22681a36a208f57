"""Setting up the backend's Python environment and, inside Slicer, the ONNX runtime.

- ``pythonFinder``: finding a Python in the backend's supported range (its ``requires-python``) to base the backend environment on.
- ``torchSelection``: CUDA or CPU PyTorch build, from ``nvidia-smi``.
- ``environment``: planning the backend environment (options, commands, paths).
- ``environmentMarker``: the "environment ready" marker file.
- ``pipProgress``: progress estimate from pip's output.
- ``stepSequence``: runs a list of commands one at a time, event driven (cancel, log, progress).
- ``environmentSetup``: the set-up itself, on ``stepSequence``.
- ``installLogic``: ``EnvironmentPanelLogic``, the "Backend environment" panel's decisions.
- ``runtimeSetup``: ``tskd.runtime`` and onnxruntime inside Slicer.
- ``installWidget``: the "Backend environment" panel.
"""
