"""The "Segment" panel (Slicer only): choose a model, segment the volume, live mode, send corrections back.

Inside Slicer the student runs with ``tskd.runtime`` on onnxruntime: the package is downloaded
once per model (worker thread), the volume's voxels are copied on the GUI thread and segmented in
a worker thread, and the result is written into the segmentation back on the GUI thread. When
onnxruntime is not installed the user is asked whether to install it (pip as a child process of the
module's process runner, with progress and Cancel; Segment and Live are disabled meanwhile);
declined or impossible, the backend segments instead (``client.predict``, also in a worker thread).

The decisions (where to run, the install, the ROI, temporary folders) are
:class:`~SlicerTSKDLib.segment.segmentationLogic.SegmentationLogic`'s, passed in; this class only shows
them and makes the Qt calls.

Live mode observes the red slice view: after a short pause in scrolling (debounce timer) it
segments the slice shown, when the view is aligned with the model's slicing axis. One model call
per slice, on the GUI thread (about 0.1 s).
"""

from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional

import ctk
import numpy as np
import qt
import slicer
import vtk

from .. import sceneData
from .boxLogic import BOX_TOOL, BoxModelCache, BoxTool
from .boxWidget import BoxWidget
from .labelNext import LabelNextLogic
from .labelNextWidget import LabelNextWidget
from .segmentationLogic import (ASK, ASK_REPLACE, BACKEND, HERE, INSTALLING, INTO_SELECTED, ONNX_FAILED, ONNX_PROMPT,
                                LiveSegmentation, SegmentationLogic, applyLabelsToSegmentation, editorEffectActive,
                                liveSegmenter,
                                outputChoice, packageLabels, replaceQuestion, segmentArray)
from .. import pairing
from ..volumeFiles import writeNrrd
from ..session import SessionState, showError, userMessage
from ..train.jobDisplayLogic import modelTitle
from ..train.projectLogic import projectTerminology
from .taskPanel import TaskPanel, TaskTexts

__all__ = ["SegmentationWidget", "defaultModelCacheFolder", "makeSegmentationLogic"]

logger = logging.getLogger(__name__)

_DEBOUNCE_MS = 120


def defaultModelCacheFolder() -> str:
    """Per-user folder of downloaded student packages (next to the backend environment folder)."""
    from ..install.environment import defaultEnvironmentRoot
    from ..hostContext import HostContext

    root = defaultEnvironmentRoot(HostContext.current(environment=slicer.util.startupEnvironment()))
    return os.path.join(os.path.dirname(root), "models")


def makeSegmentationLogic(moduleDir: str) -> SegmentationLogic:
    """The panel's logic in Slicer: the per-user model cache, pip through a ``QProcessRunner``.

    pip runs as ``slicer.util.pip_install`` runs it (``Base/Python/slicer/util.py``,
    ``_executePythonModule``): ``PythonSlicer -m pip`` found on ``PATH``, in Slicer's own environment.
    """
    import shutil

    from ..processRunner import QProcessRunner
    from ..install.runtimeSetup import OnnxruntimeInstall, pipInstallCommand
    from .segmentationLogic import ModelCache

    python = shutil.which("PythonSlicer")
    installer = None
    if python:
        installer = OnnxruntimeInstall(QProcessRunner(), pipInstallCommand(python), dict(os.environ))
    else:
        logger.warning("PythonSlicer is not on PATH: onnxruntime cannot be installed from the module")
    return SegmentationLogic(moduleDir, ModelCache(defaultModelCacheFolder()), installer)


class SegmentationWidget(TaskPanel):
    """Builds the panel into ``parentLayout``.

    Args:
        parentLayout: layout of the module widget.
        session: the shared state.
        data: the volume/segmentation/ROI selectors.
        projectWidget: used by "Add corrected result as a training case".
        logic: the panel's :class:`SegmentationLogic` (model cache, where to run, onnxruntime install).
        labelNext: the "Label next" list's logic (default: cases downloaded next to the model cache).
        boxTool: the "Box to mask" section's logic (default: box models downloaded next to the model cache).
    """

    taskName = "Segmenting"
    taskTexts = TaskTexts(failed="Segmentation failed.", cancelled="Segmentation cancelled.")

    def __init__(self, parentLayout: "qt.QLayout", session: SessionState, data, projectWidget,
                 logic: SegmentationLogic, labelNext: Optional[LabelNextLogic] = None,
                 boxTool: Optional[BoxTool] = None) -> None:
        self.session = session
        self.data = data
        self.projectWidget = projectWidget
        self.logic = logic
        self.cache = logic.cache
        self.models: List[Dict[str, Any]] = []
        self.live: Optional[LiveSegmentation] = None
        self.task = None
        self._afterInstall = None
        self.preferredModel = lambda: ""  # the scene's parameter node's model id (moduleWidget sets it)
        self.modelChosen = lambda modelId: None
        self._sliceNode = None
        self._observer = None
        self._editorObservers: List[Any] = []
        self.debounce = qt.QTimer()
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(_DEBOUNCE_MS)
        self.debounce.connect("timeout()", self._segmentLiveSlice)
        self.progressTimer = qt.QTimer()
        self.progressTimer.setInterval(200)
        self.progressTimer.connect("timeout()", self._showProgress)
        self._build(parentLayout)
        self.labelNext = LabelNextWidget(self.form, session, data, labelNext or LabelNextLogic(
            os.path.join(os.path.dirname(self.cache.folder), "cases")), self._model, self.onSegment)
        self.box = BoxWidget(self.form, session, data, boxTool or BoxTool(
            BoxModelCache(os.path.join(os.path.dirname(self.cache.folder), "box_models")),
            lambda segmentation: logic.liveWrites(segmentation, BOX_TOOL)),
            self._whereToRun, self._liveOutput, _saveEditorUndoState)
        session.projectChanged.connect(lambda project: self.refreshModels())
        session.modelReady.connect(lambda modelId: self.refreshModels(modelId))
        data.volumeSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: self._stopLive())
        logic.installProgress.connect(self._onInstallProgress)
        logic.installFinished.connect(self._onInstallFinished)
        self._updateButtons()

    def _build(self, parentLayout: "qt.QLayout") -> None:
        box = ctk.ctkCollapsibleButton()
        box.text = "Segment"
        parentLayout.addWidget(box)
        form = self.form = qt.QFormLayout(box)
        row = qt.QHBoxLayout()
        self.modelCombo = qt.QComboBox()
        self.refreshButton = qt.QPushButton("Refresh")
        row.addWidget(self.modelCombo, 1)
        row.addWidget(self.refreshButton)
        form.addRow("Model:", row)
        row = qt.QHBoxLayout()
        self.segmentButton = qt.QPushButton("Segment volume")
        self.cancelButton = qt.QPushButton("Cancel")
        row.addWidget(self.segmentButton)
        row.addWidget(self.cancelButton)
        form.addRow(row)
        self.progressBar = qt.QProgressBar()
        self.progressBar.setRange(0, 100)
        self.progressBar.visible = False
        form.addRow(self.progressBar)
        self.liveCheck = qt.QCheckBox("Live: segment the slice shown in the red view while scrolling")
        form.addRow(self.liveCheck)
        self.addCorrectedButton = qt.QPushButton("Add corrected result as a training case")
        self.addCorrectedButton.toolTip = ("After correcting the result with the Segment Editor, send the volume and its "
                                           "segmentation to the project, then train again.")
        form.addRow(self.addCorrectedButton)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        form.addRow(self.statusLabel)
        self.refreshButton.connect("clicked()", lambda: self.refreshModels())
        self.segmentButton.connect("clicked()", self.onSegment)
        self.cancelButton.connect("clicked()", self.onCancel)
        self.liveCheck.connect("toggled(bool)", self.onLiveToggled)
        self.addCorrectedButton.connect("clicked()", lambda: self.projectWidget.addCase())
        self.modelCombo.connect("currentIndexChanged(int)", self._onModelChosen)

    # ---------------------------------------------------------------- models
    def refreshModels(self, selectId: Optional[str] = None) -> None:
        self.modelCombo.clear()
        self.models = []
        project, client = self.session.project, self.session.client
        if project is None or client is None:
            self._updateButtons()
            return
        self.session.submit("Listing models", client.list_models, str(project["id"]),
                            onSuccess=lambda models: self._showModels(models, selectId),
                            onError=lambda exc: showError(exc, self.session))

    def _showModels(self, models: List[Dict[str, Any]], selectId: Optional[str]) -> None:
        self.models = sorted(models, key=lambda m: str(m.get("created") or ""), reverse=True)
        for model in self.models:
            self.modelCombo.addItem(modelTitle(model, self.models), str(model["id"]))
        selectId = selectId or self.preferredModel()
        index = next((i for i, m in enumerate(self.models) if str(m["id"]) == selectId), 0 if self.models else -1)
        self.modelCombo.currentIndex = index
        if not self.models:
            self.statusLabel.text = "This project has no trained model yet: train one above."
        self._offerBoxModels()
        self._updateButtons()

    def _onModelChosen(self, index: int) -> None:
        self._stopLive()
        model = self._model()
        if model is not None:
            self.modelChosen(str(model["id"]))
        self._offerBoxModels()

    def _offerBoxModels(self) -> None:
        """The box section offers the chosen model's task-tuned box model when it has one."""
        if getattr(self, "box", None) is not None:
            model = self._model()
            self.box.setModel(model, modelTitle(model, self.models) if model is not None else "")

    def _model(self) -> Optional[Dict[str, Any]]:
        index = self.modelCombo.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    # ------------------------------------------------------- where it runs
    def _whereToRun(self, retry) -> Optional[str]:
        """HERE or BACKEND; None while onnxruntime installs (``retry`` runs once it has finished)."""
        where = self.logic.whereToRun()
        if where == ASK:
            where = self.logic.answerInstall(bool(slicer.util.confirmOkCancelDisplay(ONNX_PROMPT, windowTitle="SlicerTSKD")))
        if where == INSTALLING:
            if self._afterInstall is None:
                self._afterInstall = retry
            self.statusLabel.text = "Installing onnxruntime (Cancel stops it)..."
            self.progressBar.value = 0
            self.progressBar.visible = True
            self._updateButtons()
            return None
        return where

    def _onInstallProgress(self, fraction: float) -> None:
        self.progressBar.value = int(round(100 * fraction))

    def _onInstallFinished(self, ok: bool, message: str) -> None:
        self.progressBar.visible = False
        retry, self._afterInstall = self._afterInstall, None
        if ok:
            self.statusLabel.text = "onnxruntime installed."
        elif message == "cancelled":
            self.statusLabel.text = "onnxruntime was not installed (cancelled): the backend segments instead."
            retry = None
        else:
            self.statusLabel.text = ONNX_FAILED.format(message)
            self.session.errors.report(ONNX_FAILED.format(message))
        self._updateButtons()
        if retry is not None:
            retry()

    # --------------------------------------------------------------- segment
    def onSegment(self) -> None:
        model, volume = self._model(), self.data.volumeNode()
        if model is None or volume is None:
            self.statusLabel.text = "Choose a model and a volume first."
            return
        try:
            roi, problem = self.logic.region(self.data.roiNode(), volume)
            if problem is not None:
                self.statusLabel.text = problem
                return
            where = self._whereToRun(self.onSegment)
            if where not in (HERE, BACKEND):
                return
            target, note = self._outputFor(volume, model.get("labels") or ())
            if where == HERE:
                self._segmentHere(str(model["id"]), volume, roi, target=target, note=note)
            else:
                self._segmentOnBackend(model, volume, roi, target=target, note=note)
        except Exception as exc:
            showError(exc, self.session)

    def _outputFor(self, volume, labels):
        """The segmentation the result replaces (None: a new one) and a note, asked before anything runs
        (issue 32, item 1: never another volume's segmentation; the volume's own only if empty or confirmed)."""
        segmentation = self.data.segmentationNode()
        decision, note = outputChoice(volume, segmentation, labels)
        if decision == ASK_REPLACE:
            replace = slicer.util.confirmYesNoDisplay(replaceQuestion(segmentation, labels), windowTitle="SlicerTSKD")
            decision = INTO_SELECTED if replace else None
        return (segmentation if decision == INTO_SELECTED else None), note

    def _segmentHere(self, modelId: str, volume, roi, target=None, note: str = "") -> None:
        array = sceneData.volumeArrayCopy(volume)
        client, cache = self.session.client, self.cache

        def work(task):
            start = 0.0
            if not cache.has(modelId):  # the student's download: its own share of the bar, and Cancel stops it
                if client is None:
                    raise RuntimeError("the model is not downloaded and no backend is connected")
                start = 0.3
                cache.download(client, modelId, cancel=task.isCancelled, progress=lambda done, total: setattr(
                    task, "progress", start * done / float(total)) if total else None)
            model = cache.model(modelId)
            values = segmentArray(model, array, roi, cancel=task.isCancelled, progress=lambda done, total: setattr(
                task, "progress", start + (1.0 - start) * done / float(total)))
            return values, packageLabels(model.package.labels)

        self._start("Segmenting '{}' in Slicer...".format(volume.GetName()), work,
                    lambda result: self._apply(volume, result[0], result[1], target, note))

    def _segmentOnBackend(self, model: Dict[str, Any], volume, roi, target=None, note: str = "") -> None:
        client = self.session.requireClient()
        snapshot = sceneData.volumeSnapshot(volume)  # a copy; the file is written in the worker
        folder = self.logic.newPredictionFolder()
        modelId, labels = str(model["id"]), packageLabels(model.get("labels") or [])

        def work(task):
            imagePath = writeNrrd(snapshot, os.path.join(folder, "image.nrrd"), cancel=task.isCancelled,
                                  progress=lambda fraction: setattr(task, "progress", 0.2 * fraction))
            # the backend crops and resizes the ROI like tskd.runtime does here (same result either way);
            # the bar goes on past the written file: sent (20-60 %), received (60-100 %)
            return client.predict(modelId, imagePath, os.path.join(folder, "label.nrrd"), roi=roi,
                                  cancel=task.isCancelled,
                                  progress=lambda fraction: setattr(task, "progress", 0.2 + 0.8 * fraction))

        def done(labelPath):
            try:
                if not pairing.inScene(volume):
                    self.statusLabel.text = "The volume was removed before the result arrived."
                    return
                values = sceneData.readLabelFile(labelPath, volume)
                self._apply(volume, values, labels, target, note)
            finally:
                self.logic.removeFolder(folder)

        self._start("The backend segments '{}'...".format(volume.GetName()), work, done,
                    lambda: self.logic.removeFolder(folder))

    def onCancel(self) -> None:
        if self.logic.installing():
            self.logic.cancelInstall()
        elif self.task is not None:
            self.task.cancel()

    def _apply(self, volume, values: np.ndarray, labels, target=None, note: str = "") -> None:
        """Write a result (GUI thread) into ``target`` (the node chosen at the click; held as an object, not
        an ID: IDs restart after Close scene), else into a new segmentation made for the volume."""
        if not pairing.inScene(volume):
            self.statusLabel.text = "The volume was removed before the result arrived."
            return
        segmentation = target if target is not None and pairing.inScene(target, volume.GetScene()) else None
        if segmentation is None:
            segmentation = self._newSegmentation(volume)
        applyLabelsToSegmentation(values, volume, segmentation, labels, projectTerminology(self.session.project))
        self.logic.forgetWrites(segmentation)  # replaced as a whole: the live and box tools' logs no longer hold
        found = [name for value, name, _ in labels if (values == value).any()]
        text = "Done: {} in '{}'.".format(", ".join(found) or "nothing found", segmentation.GetName())
        notes = [part for part in (note, sceneData.colourNote(volume)) if part]
        self.statusLabel.text = " ".join([text] + notes)

    def _newSegmentation(self, volume):
        """A new segmentation for ``volume``, selected (and so remembered as the volume's)."""
        segmentation = sceneData.newSegmentationFor(volume, volume.GetName() + " TS-KD")
        if self.data.volumeNode() is volume:
            self.data.segmentationSelector.setCurrentNode(segmentation)
        return segmentation

    def _liveOutput(self, volume):
        """Live mode writes into the selected segmentation when it is the volume's (its own voxels are
        protected by :class:`LiveSegmentation`), never into another volume's (a new one instead)."""
        segmentation = self.data.segmentationNode()
        if segmentation is not None and pairing.inScene(segmentation) \
                and pairing.owner(segmentation, volume)[0] != pairing.OTHER:
            return segmentation
        return self._newSegmentation(volume)

    # ------------------------------------------------------------------ live
    def onLiveToggled(self, checked: bool) -> None:
        if not checked:
            self._stopLive()
            return
        model, volume = self._model(), self.data.volumeNode()
        where = self._whereToRun(self._retryLive) if model is not None and volume is not None else BACKEND
        if where != HERE:
            self._uncheckLive()
            if where is not None:
                self.statusLabel.text = "Live mode needs a model, a volume and onnxruntime inside Slicer."
            return
        modelId, client, cache = str(model["id"]), self.session.client, self.cache
        array = sceneData.volumeArrayCopy(volume)  # the statistics are computed from it in the worker

        def load():
            if not cache.has(modelId):
                cache.download(client, modelId)
            loaded = cache.model(modelId)
            return loaded, liveSegmenter(loaded, array)

        def ready(result):
            loaded, segmenter = result
            try:
                volumeNow = self.data.volumeNode()
                if volumeNow is None or not self.liveCheck.checked:
                    return
                if not pairing.sameNode(volumeNow, volume):
                    return
                output = self._liveOutput(volumeNow)
                self.live = LiveSegmentation(loaded, volumeNow, output, packageLabels(loaded.package.labels),
                                             segmenter=segmenter, writes=self.logic.liveWrites(output),
                                             beforeWrite=lambda: _saveEditorUndoState(output),
                                             terminology=projectTerminology(self.session.project))
                self._observe()
                if self._stopLiveForEditor():
                    return
                self._segmentLiveSlice()
            except Exception as exc:
                self._stopLive()
                showError(exc, self.session)

        def failed(exc):
            self._stopLive()
            showError(exc, self.session)

        self.statusLabel.text = "Loading the model for live mode..."
        self.session.submit("Loading model", load, onSuccess=ready, onError=failed)

    def _retryLive(self) -> None:
        if self.logic.whereToRun() == HERE:
            self.liveCheck.blockSignals(True)
            self.liveCheck.checked = True
            self.liveCheck.blockSignals(False)
            self.onLiveToggled(True)

    def _uncheckLive(self) -> None:
        if self.liveCheck.checked:
            self.liveCheck.blockSignals(True)
            self.liveCheck.checked = False
            self.liveCheck.blockSignals(False)

    def _observe(self) -> None:
        self._sliceNode = slicer.mrmlScene.GetNodeByID("vtkMRMLSliceNodeRed")
        if self._sliceNode is not None:
            self._observer = self._sliceNode.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self.debounce.start())
        # a Segment Editor effect chosen on this segmentation stops live mode (issue 32, item 2)
        scene = slicer.mrmlScene
        self._editorObservers = [(scene, scene.AddObserver(scene.NodeAddedEvent, self._onEditorNodes))]
        self._onEditorNodes()

    def _onEditorNodes(self, *args) -> None:
        scene = slicer.mrmlScene
        watched = [node for node, _ in self._editorObservers[1:]]
        nodes = scene.GetNodesByClass("vtkMRMLSegmentEditorNode")
        for index in range(nodes.GetNumberOfItems()):
            node = nodes.GetItemAsObject(index)
            if not any(node is other for other in watched):
                self._editorObservers.append((node, node.AddObserver(vtk.vtkCommand.ModifiedEvent,
                                                                     lambda caller, event: self._stopLiveForEditor())))
        self._stopLiveForEditor()

    def _stopLiveForEditor(self) -> bool:
        if self.live is None:
            return False
        effect = editorEffectActive(slicer.mrmlScene, self.live.segmentationNode)
        if effect is None:
            return False
        self._stopLive()
        self.statusLabel.text = ("Live mode stopped: the Segment Editor's '{}' effect is active on this segmentation. "
                                 "Your corrections are kept; tick Live again to continue.".format(effect))
        return True

    def _segmentLiveSlice(self) -> None:
        if self.live is None or self._sliceNode is None:
            return
        matrix = self._sliceNode.GetSliceToRAS()
        sliceToRas = np.array([[matrix.GetElement(r, c) for c in range(4)] for r in range(4)])
        try:
            index = self.live.updateForView(sliceToRas)
        except Exception as exc:
            self._stopLive()
            self.statusLabel.text = "Live mode stopped: " + userMessage(exc, self.session.url)
            return
        if index is None:
            axis = "KJI"[self.live.axis]
            self.statusLabel.text = ("Live: the red view is not aligned with the volume's slices along {}: align it "
                                     "('Rotate to volume plane' in the view's menu) to segment them.".format(axis))
        else:
            kept = self.live.kept
            self.statusLabel.text = "Live: slice {} segmented{}.".format(
                index, " ({} voxel(s) you changed or drew were kept)".format(kept) if kept else "")

    def _stopLive(self) -> None:
        self.debounce.stop()
        if self._sliceNode is not None and self._observer is not None:
            self._sliceNode.RemoveObserver(self._observer)
        self._sliceNode = self._observer = None
        for node, tag in self._editorObservers:
            node.RemoveObserver(tag)
        self._editorObservers = []
        self.live = None
        self._uncheckLive()

    def _updateButtons(self) -> None:
        busy = self.session.tasks.busy("Segmenting")
        installing = self.logic.installing()
        self.refreshButton.enabled = self.session.project is not None
        self.segmentButton.enabled = self._model() is not None and not busy and not installing
        self.cancelButton.enabled = busy or installing
        self.liveCheck.enabled = self._model() is not None and not installing
        self.addCorrectedButton.enabled = self.session.project is not None

    def sceneClosing(self) -> None:
        """Close scene: live mode stops and a running segmentation is cancelled (its volume goes away)."""
        self._stopLive()
        self.box.sceneClosing()
        if self.task is not None and not self.task.done:
            self.task.cancel()

    def exit(self) -> None:
        """The module is left (e.g. for the Segment Editor): live mode stops, so it never writes while the user
        corrects elsewhere (issue 32, item 2)."""
        if self.live is not None or self.liveCheck.checked:
            self._stopLive()
            self.statusLabel.text = "Live mode stopped when the module was left; tick Live again to continue."

    def cleanup(self) -> None:
        self._stopLive()
        self.labelNext.cleanup()
        self.box.cleanup()
        self.progressTimer.stop()
        if self.task is not None:
            self.task.cancel()
        self.logic.cleanup()


def _saveEditorUndoState(segmentationNode) -> None:
    """Before live mode writes: an undo step in the Segment Editor when it edits this segmentation
    (``qMRMLSegmentEditorWidget::saveStateForUndo``, a public slot in v5.6.2 l. 312 and HEAD l. 325 of
    ``Modules/Loadable/Segmentations/Widgets/qMRMLSegmentEditorWidget.h``; the module's widget is
    ``SegmentEditor.py``'s ``self.editor``). Only when a Segment Editor node already edits this segmentation
    (the editor's widget made it), so the Segment Editor's widget is never created for this."""
    try:
        nodes = slicer.mrmlScene.GetNodesByClass("vtkMRMLSegmentEditorNode")
        if not any(pairing.sameNode(nodes.GetItemAsObject(n).GetSegmentationNode(), segmentationNode)
                   for n in range(nodes.GetNumberOfItems())):
            return
        module = getattr(slicer.modules, "segmenteditor", None)
        if module is None:
            return
        editor = module.widgetRepresentation().self().editor
        if editor is not None and pairing.sameNode(editor.segmentationNode(), segmentationNode):
            editor.saveStateForUndo()
    except Exception:
        logger.debug("no Segment Editor undo step", exc_info=True)
