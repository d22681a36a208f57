"""The module's scripting entry point: ``SlicerTSKDLogic().segment(volume, model)`` (issue 32, item 13).

Other modules and batch scripts use a trained student without the panels, as SlicerNNUnet and
SlicerMONAIAuto3DSeg offer::

    import SlicerTSKD
    segmentation = SlicerTSKD.SlicerTSKDLogic().segment(volumeNode, "/path/to/model.tskd.zip")

It runs on the calling thread (a script waits for it; the panels run the same steps in a worker
thread) with ``tskd.runtime`` on onnxruntime, writes one segment per label of the student into a new
segmentation made for the volume (or into ``segmentationNode``, which must be that volume's), and
tags the segments with a terminology when one is given (``{label name: serialized entry}``).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Optional

from . import pairing, sceneData
from .segment.segmentationLogic import applyLabelsToSegmentation, packageLabels, roiNodeBounds, segmentArray

__all__ = ["SlicerTSKDLogic"]


class SlicerTSKDLogic:
    """Segmenting volumes with a student package from scripts.

    Args:
        moduleDir: folder of ``SlicerTSKD.py`` (to find the shipped ``tskd.runtime``; default: this package's parent).
    """

    def __init__(self, moduleDir: Optional[str] = None) -> None:
        self.moduleDir = moduleDir or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self._models: Dict[str, Any] = {}

    def loadModel(self, model: Any) -> Any:
        """A loaded student: ``model`` itself when it is one, else a package (``.tskd.zip`` or folder) loaded once."""
        if not isinstance(model, (str, os.PathLike)):
            return model
        path = os.path.abspath(os.fspath(model))
        if path not in self._models:
            if not os.path.exists(path):
                raise sceneData.SceneError("No student package at {}: give a .tskd.zip file or its folder.".format(path))
            from .install.runtimeSetup import ensureRuntimeImportable

            ensureRuntimeImportable(self.moduleDir)
            from tskd.runtime import OnnxSegmenter

            self._models[path] = OnnxSegmenter(path)
        return self._models[path]

    def segment(self, volumeNode: Any, model: Any, segmentationNode: Any = None, roiNode: Any = None,
                terminology: Optional[Dict[str, str]] = None) -> Any:
        """Segment ``volumeNode`` with ``model`` (a package path or a loaded student); returns the segmentation.

        Raises:
            SceneError: no volume, a segmentation drawn on another volume, an ROI outside the volume.
        """
        if volumeNode is None or volumeNode.GetImageData() is None:
            raise sceneData.SceneError("Give a volume that has image data.")
        if segmentationNode is not None and pairing.owner(segmentationNode, volumeNode)[0] == pairing.OTHER:
            raise sceneData.SceneError("'{}' was drawn on another volume than '{}': give that volume's segmentation, "
                                       "or none (a new one is made).".format(segmentationNode.GetName(),
                                                                             volumeNode.GetName()))
        roi = None
        if roiNode is not None:
            roi = roiNodeBounds(roiNode, volumeNode)
            if roi is None:
                raise sceneData.SceneError("The region (ROI) does not overlap the volume.")
        loaded = self.loadModel(model)
        values = segmentArray(loaded, sceneData.volumeArrayCopy(volumeNode), roi)
        if segmentationNode is None:
            segmentationNode = sceneData.newSegmentationFor(volumeNode, volumeNode.GetName() + " TS-KD")
        applyLabelsToSegmentation(values, volumeNode, segmentationNode, packageLabels(loaded.package.labels), terminology)
        return segmentationNode
