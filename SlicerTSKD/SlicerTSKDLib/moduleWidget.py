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
from .sceneEvents import SceneWatcher, SelectionSync
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
        # the selectors and the scene's parameter node, in step across Close scene and scene loads (issue 32, item 9)
        self.selectionSync = SelectionSync(slicer.mrmlScene, {"volume": self.data.volumeSelector,
                                                              "segmentation": self.data.segmentationSelector,
                                                              "roi": self.data.roiSelector})
        self.selectionSync.attach()
        self._connectParameters()
        self.sceneWatcher = SceneWatcher(slicer.mrmlScene, self.onSceneStartClose, self.onSceneEndClose,
                                         self.onSceneEndImport)
        self.installLogic.environmentReady.connect(self.backendWidget.setEnvironment)
        self.installWidget.refreshStatus()  # emits environmentReady now that the backend panel listens

    @property
    def parameters(self):
        """The scene's selections (None while the scene is being closed)."""
        return self.selectionSync.parameters

    def _setParameter(self, field: str, value) -> None:
        if self.parameters is not None:
            setattr(self.parameters, field, value)

    def _connectParameters(self) -> None:
        """The project and model ids go to the scene's parameter node too (the selectors: ``SelectionSync``)."""
        self.session.projectChanged.connect(
            lambda project: self._setParameter("projectId", str(project["id"])) if project else None)
        self.projectWidget.preferredProject = lambda: self.selectionSync.ids()[0]
        self.segmentationWidget.preferredModel = lambda: self.selectionSync.ids()[1]
        self.segmentationWidget.modelChosen = lambda modelId: self._setParameter("modelId", modelId)
        self.trainingWidget.preferredModel = lambda: self.selectionSync.ids()[1]

    # -- the scene (issue 32, item 9) --------------------------------------------------------------
    def enter(self) -> None:
        """The module is shown: the selectors show the scene's parameter node (made when missing)."""
        self.selectionSync.attach()

    def onSceneStartClose(self) -> None:
        """Close scene: live mode and pending results stop (their nodes go), remembered pairs are forgotten."""
        self.segmentationWidget.sceneClosing()
        self.data.pairs.forgetAll()
        self.selectionSync.startClose()

    def onSceneEndClose(self) -> None:
        self.selectionSync.endClose()

    def onSceneEndImport(self) -> None:
        """A scene was loaded: its selections, and its project once the list is there."""
        self.selectionSync.endImport()
        if self.session.client is not None:
            self.projectWidget.refreshProjects()

    def exit(self) -> None:
        """The user left the module (``ScriptedLoadableModuleWidget.exit``): live mode stops (issue 32, item 2)."""
        self.segmentationWidget.exit()

    def cleanup(self) -> None:
        """Stop timers, live mode, a set-up in progress and the local backend (module closed or reloaded)."""
        self.pump.stop()
        self.sceneWatcher.remove()
        for panel in (self.segmentationWidget, self.projectWidget, self.trainingWidget, self.backendWidget, self.installWidget):
            try:
                panel.cleanup()
            except Exception:
                logger.exception("cleaning up %s failed", type(panel).__name__)
        self.session.shutdown()
