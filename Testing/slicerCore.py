"""slicer-core's real MRML scene set up the way Slicer sets it up, for tests and benchmarks.

``slicer.util``'s array helpers find the scene as ``slicer.mrmlScene`` and the module logics as
``slicer.modules.volumes.logic()`` / ``slicer.modules.segmentations.logic()``. Outside the Slicer
application nothing creates them, so :func:`installScene` makes a ``vtkMRMLScene`` with a real
``vtkSlicerVolumesLogic`` and ``vtkSlicerSegmentationsModuleLogic`` on it, registers the
segmentation converter rules in ``vtkSegmentationConverterFactory`` (as the Segmentations module
does at start-up), and points ``slicer.mrmlScene`` / ``slicer.modules`` at them.
"""

from __future__ import annotations

import types
from typing import Any, Callable, Tuple

__all__ = ["installScene"]

_RULES = ("vtkBinaryLabelmapToClosedSurfaceConversionRule", "vtkClosedSurfaceToBinaryLabelmapConversionRule",
          "vtkClosedSurfaceToFractionalLabelmapConversionRule", "vtkFractionalLabelmapToClosedSurfaceConversionRule")


def installScene() -> Tuple[Any, Callable[[], None]]:
    """A new scene installed as ``slicer.mrmlScene``; returns ``(scene, restore)``."""
    import slicer
    import slicer.util  # noqa: F401  (the helpers under test)

    scene = slicer.vtkMRMLScene()
    volumesLogic = slicer.vtkSlicerVolumesLogic()
    volumesLogic.SetMRMLScene(scene)
    segmentationsLogic = slicer.vtkSlicerSegmentationsModuleLogic()
    segmentationsLogic.SetMRMLScene(scene)
    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    registered = {rule.GetClassName() for rule in factory.GetConverterRules()}
    for name in _RULES:
        if name not in registered:
            factory.RegisterConverterRule(getattr(slicer, name)())
    missing = object()
    saved = {name: getattr(slicer, name, missing) for name in ("mrmlScene", "modules")}
    slicer.mrmlScene = scene
    slicer.modules = types.SimpleNamespace(
        volumes=types.SimpleNamespace(logic=lambda: volumesLogic),
        segmentations=types.SimpleNamespace(logic=lambda: segmentationsLogic),
    )

    def restore() -> None:
        for name, value in saved.items():
            if value is missing:
                delattr(slicer, name)
            else:
                setattr(slicer, name, value)
        segmentationsLogic.SetMRMLScene(None)
        volumesLogic.SetMRMLScene(None)
        scene.Clear(1)

    return scene, restore
