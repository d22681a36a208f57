"""The module's panels, put together (Slicer only): environment, backend, data, project, training, segmentation.

Owns the :class:`SessionState` the panels share and the ``qt.QTimer`` that delivers the results
of background tasks on the GUI thread (every 100 ms while tasks are pending, idle otherwise).
"""

from __future__ import annotations

import logging

import ctk
import qt
import slicer

from . import sceneData
from .pairing import SegmentationPairs
from .parameterNode import findParameterNode, selections
from .backend.backendWidget import BackendWidget, makeBackendLogic
from .install.installWidget import InstallWidget, makeEnvironmentPanelLogic
from .train.projectLogic import ProjectLogic
from .train.projectWidget import ProjectWidget
from .segment.segmentationWidget import SegmentationWidget, makeSegmentationLogic
from .session import SessionState
from .train.trainingLogic import TrainingLogic
from .train.trainingWidget import TrainingWidget

__all__ = ["ModuleWidget", "DataSelectors"]

logger = logging.getLogger(__name__)


class DataSelectors:
    """The volume, segmentation and ROI every panel works on."""

    def __init__(self, parentLayout: "qt.QLayout") -> None:
        box = ctk.ctkCollapsibleButton()
        box.text = "Images"
        parentLayout.addWidget(box)
        form = qt.QFormLayout(box)
        self.volumeSelector = self._selector(sceneData.VOLUME_SELECTOR["nodeTypes"], "The image to label, train on or segment.")
        self.volumeSelector.hideChildNodeTypes = sceneData.VOLUME_SELECTOR["hideChildNodeTypes"]
        self.segmentationSelector = self._selector(
            ["vtkMRMLSegmentationNode"], "The segmentation of the image: its segments are the structures to learn, "
            "and segmenting writes into it (a new one is created when none is selected).", addEnabled=True)
        self.roiSelector = self._selector(["vtkMRMLMarkupsROINode"], "Optional box: segment only inside it.", addEnabled=True)
        form.addRow("Volume:", self.volumeSelector)
        form.addRow("Segmentation:", self.segmentationSelector)
        form.addRow("Region (optional):", self.roiSelector)
        # issue 32, item 1: the segmentation follows the volume (the one last used with it, else the newest
        # made for it, else none: a new one is made when something is written)
        self.pairs = SegmentationPairs()
        self.volumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", self._onVolumeChanged)
        self.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)",
                                          lambda node: self.pairs.remember(self.volumeNode(), node))

    def _onVolumeChanged(self, volume) -> None:
        self.segmentationSelector.setCurrentNode(self.pairs.segmentationFor(volume))

    @staticmethod
    def _selector(nodeTypes, toolTip: str, addEnabled: bool = False):
        selector = slicer.qMRMLNodeComboBox()
        selector.nodeTypes = nodeTypes
        selector.selectNodeUponCreation = True
        selector.addEnabled = addEnabled
        selector.removeEnabled = False
        selector.noneEnabled = True
        selector.showHidden = False
        selector.toolTip = toolTip
        selector.setMRMLScene(slicer.mrmlScene)
        return selector

    def volumeNode(self):
        return self.volumeSelector.currentNode()

    def segmentationNode(self):
        return self.segmentationSelector.currentNode()

    def roiNode(self):
        return self.roiSelector.currentNode()


class ModuleWidget:
    """Builds every panel into ``parentLayout``.

    Args:
        parentLayout: the module widget's layout.
        moduleDir: folder of ``SlicerTSKD.py``.
    """

    def __init__(self, parentLayout: "qt.QLayout", moduleDir: str) -> None:
        self.session = SessionState()
        self.session.errors.display = lambda text: slicer.util.errorDisplay(text, windowTitle="SlicerTSKD")
        self.pump = qt.QTimer()
        self.pump.setInterval(100)
        self.pump.connect("timeout()", self.session.poll)
        self.session.busyChanged.connect(lambda busy: self.pump.start() if busy else self.pump.stop())

        # each panel gets its logic object (the panels' decisions, tested outside Slicer)
        self.installLogic = makeEnvironmentPanelLogic(moduleDir)
        self.installWidget = InstallWidget(parentLayout, self.installLogic)
        self.backendLogic = makeBackendLogic(self.session)
        self.backendWidget = BackendWidget(parentLayout, self.session, self.backendLogic)
        self.data = DataSelectors(parentLayout)
        self.projectLogic = ProjectLogic(qt.QSettings())
        self.projectWidget = ProjectWidget(parentLayout, self.session, self.data, self.projectLogic)
        self.trainingLogic = TrainingLogic()
        self.trainingWidget = TrainingWidget(parentLayout, self.session, self.trainingLogic)
        self.segmentationLogic = makeSegmentationLogic(moduleDir)
        self.segmentationWidget = SegmentationWidget(parentLayout, self.session, self.data, self.projectWidget,
                                                     self.segmentationLogic)
        self.parameters = selections(findParameterNode(slicer.mrmlScene))
        self._connectParameters()
        self.installLogic.environmentReady.connect(self.backendWidget.setEnvironment)
        self.installWidget.refreshStatus()  # emits environmentReady now that the backend panel listens

    def _connectParameters(self) -> None:
        """The selections go to the scene's parameter node (saved with the scene) and come back from it."""
        parameters = self.parameters
        for field, selector in (("volume", self.data.volumeSelector), ("segmentation", self.data.segmentationSelector),
                                ("roi", self.data.roiSelector)):
            saved = getattr(parameters, field)
            if saved is not None:
                selector.setCurrentNode(saved)
            selector.connect("currentNodeChanged(vtkMRMLNode*)",
                             lambda node, field=field: setattr(self.parameters, field, node))
        self.session.projectChanged.connect(
            lambda project: setattr(self.parameters, "projectId", str(project["id"])) if project else None)
        self.projectWidget.preferredProject = lambda: self.parameters.projectId
        self.segmentationWidget.preferredModel = lambda: self.parameters.modelId
        self.segmentationWidget.modelChosen = lambda modelId: setattr(self.parameters, "modelId", modelId)
        self.trainingWidget.preferredModel = lambda: self.parameters.modelId

    def exit(self) -> None:
        """The user left the module (``ScriptedLoadableModuleWidget.exit``): live mode stops (issue 32, item 2)."""
        self.segmentationWidget.exit()

    def cleanup(self) -> None:
        """Stop timers, live mode, a set-up in progress and the local backend (module closed or reloaded)."""
        self.pump.stop()
        for panel in (self.segmentationWidget, self.projectWidget, self.trainingWidget, self.backendWidget, self.installWidget):
            try:
                panel.cleanup()
            except Exception:
                logger.exception("cleaning up %s failed", type(panel).__name__)
        self.session.shutdown()
