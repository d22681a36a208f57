"""The "Box to mask" section of the Segment panel (Slicer only): thin Qt wiring over
:mod:`SlicerTSKDLib.segment.boxLogic`.

*Place box* puts the slice views into ROI placement for a new box (two clicks on a slice). *Segment
slice from box* maps the box to the slice it was drawn on, copies that slice's voxels (GUI thread),
runs the box model in a worker thread (downloading it from the backend first when it is not cached)
and writes the mask into the chosen segment back on the GUI thread, through the Segment panel's
undo-able in-place write that never touches what the user painted. While *Update when the box moves*
is ticked, moving or resizing the box segments the slice again after a short pause (only the
decoder runs: the slice's embedding is kept). *Propagate* walks from the box's slice through its
neighbours in a worker, with progress and *Cancel* (nothing is written when cancelled).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, Optional

import ctk
import numpy as np
import qt
import slicer
import vtk

from .. import pairing, sceneData
from ..session import SessionState, showError
from ..train.projectLogic import projectTerminology
from .boxLogic import BoxProblem, BoxPrompt, BoxTool, propagationText, propagateBox, roiNodeBox, \
    segmentBox, segmentChoices
from .segmentationLogic import HERE
from .taskPanel import TaskPanel, TaskTexts

__all__ = ["BoxWidget", "BOX_NODE_ATTRIBUTE", "VIEW_ORDER", "startPlacing"]

logger = logging.getLogger(__name__)

#: The attribute that marks the ROI nodes "Place box" made (the next "Place box" replaces them).
BOX_NODE_ATTRIBUTE = "SlicerTSKD.BoxTool"
#: The slice views whose planes tell which slice a box was drawn on: these layout names first, in this order.
VIEW_ORDER = ("Red", "Yellow", "Green")
_TASK = "Box"
_DEBOUNCE_MS = 150


def startPlacing(scene: Any, roiNode: Any) -> bool:
    """Put the views into placing ``roiNode`` (two clicks on a slice; False: no interaction node).

    What ``vtkSlicerMarkupsLogic::SetActiveList`` does (``Modules/Loadable/Markups/Logic/
    vtkSlicerMarkupsLogic.cxx`` l. 576-620 at HEAD: the selection node's active place class and node),
    then ``vtkMRMLInteractionNode::SwitchToSinglePlaceMode`` (``Libs/MRML/Core/vtkMRMLInteractionNode.h``
    l. 76 at HEAD, l. 78 in v5.6.2). ``vtkSlicerMarkupsLogic::StartPlaceMode`` is not used: it sets the
    place class to the point list (``.cxx`` l. 1985).
    """
    selection = scene.GetNodeByID("vtkMRMLSelectionNodeSingleton")
    interaction = scene.GetNodeByID("vtkMRMLInteractionNodeSingleton")
    if selection is None or interaction is None:
        return False
    selection.SetReferenceActivePlaceNodeClassName(roiNode.GetClassName())
    selection.SetReferenceActivePlaceNodeID(roiNode.GetID())
    interaction.SwitchToSinglePlaceMode()
    return True


class BoxWidget(TaskPanel):
    """Builds the section into ``form`` (the Segment panel's form layout).

    Args:
        form: the Segment panel's layout.
        session: the shared state (client, project, tasks).
        data: the volume/segmentation selectors.
        tool: the box tool's logic (models, cache, writes).
        whereToRun: ``whereToRun(retry)``, the Segment panel's check for onnxruntime inside Slicer (asks to
            install it; returns ``HERE`` when the box can run, None while it installs: ``retry`` follows).
        outputFor: ``outputFor(volume)``, the segmentation the result goes into (the selected one when it is
            the volume's, else a new one).
        beforeWrite: ``beforeWrite(segmentation)``, the Segment Editor's undo step.
    """

    taskName = _TASK
    taskTexts = TaskTexts(failed="The box tool failed.", cancelled="Cancelled: nothing was written.",
                          writeFailed="The result could not be written.", expected=(BoxProblem,))

    def __init__(self, form: "qt.QLayout", session: SessionState, data, tool: BoxTool,
                 whereToRun: Callable[[Callable[[], None]], Optional[str]], outputFor: Callable[[Any], Any],
                 beforeWrite: Callable[[Any], None]) -> None:
        self.session = session
        self.data = data
        self.tool = tool
        self.whereToRun = whereToRun
        self.outputFor = outputFor
        self.beforeWrite = beforeWrite
        self.boxNode = None
        self.task = None
        self.last: Optional[Dict[str, Any]] = None  # what the last finished run did (for tests and the status)
        self._boxObserver = None
        self._build(form)
        session.projectChanged.connect(lambda project: self.refreshSegments())
        data.segmentationSelector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node: self.refreshSegments())
        self.setModel(None)
        self.refreshSegments()
        self._updateButtons()

    def _build(self, form: "qt.QLayout") -> None:
        box = ctk.ctkCollapsibleGroupBox()
        box.title = "Box to mask"
        form.addRow(box)
        layout = qt.QFormLayout(box)
        self.modelCombo = qt.QComboBox()
        self.modelCombo.toolTip = ("The model that turns a box into a mask. Once the project has a trained model whose "
                                   "teacher was tuned on your labels, it is offered first.")
        layout.addRow("Box model:", self.modelCombo)
        self.segmentCombo = qt.QComboBox()
        self.segmentCombo.toolTip = "The segment the mask goes into (added when the segmentation lacks it)."
        layout.addRow("Segment:", self.segmentCombo)
        row = qt.QHBoxLayout()
        self.placeButton = qt.QPushButton("Place box")
        self.placeButton.toolTip = "Then click two opposite corners of the box on a slice."
        self.segmentButton = qt.QPushButton("Segment slice from box")
        self.propagateButton = qt.QPushButton("Propagate")
        self.propagateButton.toolTip = ("From the box's slice through the neighbouring slices, each from the mask of the "
                                        "one before, until the structure ends.")
        self.cancelButton = qt.QPushButton("Cancel")
        for button in (self.placeButton, self.segmentButton, self.propagateButton, self.cancelButton):
            row.addWidget(button)
        layout.addRow(row)
        self.followCheck = qt.QCheckBox("Update when the box moves")
        self.followCheck.checked = True
        layout.addRow(self.followCheck)
        self.progressBar = qt.QProgressBar()
        self.progressBar.setRange(0, 100)
        self.progressBar.visible = False
        layout.addRow(self.progressBar)
        self.statusLabel = qt.QLabel()
        self.statusLabel.wordWrap = True
        layout.addRow(self.statusLabel)
        self.debounce = qt.QTimer()
        self.debounce.setSingleShot(True)
        self.debounce.setInterval(_DEBOUNCE_MS)
        self.debounce.connect("timeout()", self._boxMoved)
        self.progressTimer = qt.QTimer()
        self.progressTimer.setInterval(200)
        self.progressTimer.connect("timeout()", self._showProgress)
        self.placeButton.connect("clicked()", self.onPlaceBox)
        self.segmentButton.connect("clicked()", self.onSegmentSlice)
        self.propagateButton.connect("clicked()", self.onPropagate)
        self.cancelButton.connect("clicked()", self.onCancel)

    # -------------------------------------------------------------- choices
    def setModel(self, model: Optional[Dict[str, Any]], title: str = "") -> None:
        """The Segment panel's chosen trained model changed: offer its task-tuned box model (first) when it has one."""
        choices = self.tool.setModel(model, title)
        self.modelCombo.clear()
        for choice in choices:
            self.modelCombo.addItem(choice.title, choice.name)
        self.modelCombo.currentIndex = 0

    def refreshSegments(self) -> None:
        """The segment choices: the project's labels and the selected segmentation's segments (the choice kept)."""
        current = self.segmentCombo.currentIndex
        previous = getattr(self, "segments", [])
        name = previous[current][0] if 0 <= current < len(previous) else None
        segmentation = self.data.segmentationNode()
        if segmentation is not None and not pairing.inScene(segmentation):
            segmentation = None
        self.segments = segmentChoices(self.session.project, segmentation)
        self.segmentCombo.clear()
        for text, _ in self.segments:
            self.segmentCombo.addItem(text)
        names = [text for text, _ in self.segments]
        self.segmentCombo.currentIndex = names.index(name) if name in names else 0

    def _choice(self):
        index = self.modelCombo.currentIndex
        return self.tool.choices[index] if 0 <= index < len(self.tool.choices) else self.tool.choices[-1]

    def _segment(self):
        index = self.segmentCombo.currentIndex
        return self.segments[index] if 0 <= index < len(self.segments) else self.segments[0]

    # ---------------------------------------------------------------- box
    def onPlaceBox(self) -> None:
        scene = slicer.mrmlScene
        old = self.boxNode
        node = scene.AddNewNodeByClass("vtkMRMLMarkupsROINode", "TS-KD box")
        node.SetAttribute(BOX_NODE_ATTRIBUTE, "1")
        node.CreateDefaultDisplayNodes()
        self.setBoxNode(node)
        if old is not None and pairing.inScene(old) and old.GetAttribute(BOX_NODE_ATTRIBUTE):
            scene.RemoveNode(old)
        if startPlacing(scene, node):
            self.statusLabel.text = "Click two opposite corners of the box on a slice of '{}'.".format(
                self.data.volumeNode().GetName() if self.data.volumeNode() is not None else "the image")
        else:
            self.statusLabel.text = "The views cannot place a box now: draw one with the Markups module's ROI."

    def setBoxNode(self, node: Any) -> None:
        """Use ``node`` (a ``vtkMRMLMarkupsROINode``) as the box; its moves are followed."""
        if self.boxNode is not None and self._boxObserver is not None:
            self.boxNode.RemoveObserver(self._boxObserver)
        self.boxNode, self._boxObserver = node, None
        if node is not None:
            self._boxObserver = node.AddObserver(vtk.vtkCommand.ModifiedEvent, lambda caller, event: self._onBoxModified())

    def _onBoxModified(self) -> None:
        if self.followCheck.checked:
            self.debounce.start()

    def _boxMoved(self) -> None:
        """The box stopped moving: segment its slice again (not while a run is going on, nor before a first one)."""
        if self.boxNode is None or self.session.tasks.busy(_TASK) or self.last is None:
            return
        size = self.boxNode.GetSize()
        if min(float(v) for v in size) <= 0:
            return  # still being placed
        self.onSegmentSlice()

    @staticmethod
    def _views():
        """The slice views' SliceToRAS matrices, red, yellow, green first (the box's slice is found in them)."""
        nodes = slicer.mrmlScene.GetNodesByClass("vtkMRMLSliceNode")
        found = [nodes.GetItemAsObject(index) for index in range(nodes.GetNumberOfItems())]
        rank = {name: position for position, name in enumerate(VIEW_ORDER)}
        found.sort(key=lambda node: rank.get(str(node.GetLayoutName()), len(rank)))
        return [sceneData.arrayFromMatrix(node.GetSliceToRAS()) for node in found]

    def _prompt(self, volume) -> Optional[BoxPrompt]:
        try:
            return roiNodeBox(self.boxNode, volume, self._views())
        except BoxProblem as exc:
            self.statusLabel.text = str(exc)
            return None

    def _ready(self, retry) -> bool:
        """A volume, a box, and onnxruntime inside Slicer (asked for / installed by the Segment panel)."""
        if self.data.volumeNode() is None:
            self.statusLabel.text = "Select a volume first."
            return False
        if self.boxNode is None or not pairing.inScene(self.boxNode):
            self.statusLabel.text = "Place a box first."
            return False
        where = self.whereToRun(retry)
        if where is None:
            return False  # onnxruntime is being installed; the click is carried out afterwards
        if where != HERE:
            self.statusLabel.text = ("The box tool runs inside Slicer and needs the 'onnxruntime' package: install it "
                                     "when asked (Segment volume asks too).")
            return False
        return True

    # -------------------------------------------------------------- runs
    def onSegmentSlice(self) -> None:
        if self.session.tasks.busy(_TASK) or not self._ready(self.onSegmentSlice):
            return
        volume = self.data.volumeNode()
        prompt = self._prompt(volume)
        if prompt is None:
            return
        try:
            image = sceneData.volumeSliceCopy(volume, prompt.axis, prompt.index)
        except Exception as exc:
            showError(exc, self.session)
            return
        client, tool, choice = self.session.client, self.tool, self._choice()

        def work(task):
            predictor = tool.prepare(client, choice, cancel=task.isCancelled, progress=lambda f, text: self._progress(
                task, 0.9 * f, text))
            encoded = predictor.encoderRuns
            mask = segmentBox(predictor, image, prompt.box)
            return mask, predictor.encoderRuns == encoded

        def done(result):
            mask, decoderOnly = result
            self._write(volume, prompt, {prompt.index: mask}, "Slice {} along {}: {} pixels{}.".format(
                prompt.index, "KJI"[prompt.axis], int(mask.sum()), " (only the decoder ran)" if decoderOnly else ""),
                decoderOnly=decoderOnly)

        self._start("Segmenting the box's slice...", work, done)

    def onPropagate(self) -> None:
        if self.session.tasks.busy(_TASK) or not self._ready(self.onPropagate):
            return
        volume = self.data.volumeNode()
        prompt = self._prompt(volume)
        if prompt is None:
            return
        try:
            array = sceneData.volumeArrayCopy(volume)
        except Exception as exc:
            showError(exc, self.session)
            return
        client, tool, choice = self.session.client, self.tool, self._choice()

        def work(task):
            predictor = tool.prepare(client, choice, cancel=task.isCancelled, progress=lambda f, text: self._progress(
                task, 0.2 * f, text))
            task.message = "Propagating the box through the slices..."
            return propagateBox(predictor, array, prompt, progress=lambda done, total: setattr(
                task, "progress", 0.2 + 0.8 * done / float(max(total, 1))), cancelled=task.isCancelled)

        def done(result):
            masks = {k: np.take(result.mask, k, axis=prompt.axis) for k in result.slices}
            self._write(volume, prompt, masks, propagationText(result, prompt.axis), slices=list(result.slices))

        self._start("Propagating the box through the slices...", work, done)

    @staticmethod
    def _progress(task, fraction: float, text: str) -> None:
        task.progress = fraction
        task.message = text

    def _write(self, volume, prompt: BoxPrompt, masks, text: str, **details) -> None:
        if not pairing.inScene(volume):
            self.statusLabel.text = "The volume was removed before the result arrived."
            return
        segmentation = self.outputFor(volume)
        name, colour = self._segment()
        segmentId, kept = self.tool.write(segmentation, (name, colour), volume, prompt.axis, masks,
                                          beforeWrite=lambda: self.beforeWrite(segmentation),
                                          terminology=projectTerminology(self.session.project))
        self.last = dict(details, segmentation=segmentation, segmentId=segmentId, prompt=prompt, kept=kept)
        notes = [text, "In '{}' of '{}'.".format(name, segmentation.GetName())]
        if kept:
            notes.append("{} voxel(s) you drew or erased were kept.".format(kept))
        self.statusLabel.text = " ".join(notes)
        self.refreshSegments()

    def onCancel(self) -> None:
        if self.task is not None and not self.task.done:
            self.task.cancel()

    def _updateButtons(self) -> None:
        busy = self.session.tasks.busy(_TASK)
        self.segmentButton.enabled = not busy
        self.propagateButton.enabled = not busy
        self.placeButton.enabled = True
        self.cancelButton.enabled = busy

    def sceneClosing(self) -> None:
        """Close scene: the box goes with the scene; a run is cancelled."""
        self.setBoxNode(None)
        self.last = None
        if self.task is not None and not self.task.done:
            self.task.cancel()

    def cleanup(self) -> None:
        self.debounce.stop()
        self.progressTimer.stop()
        self.setBoxNode(None)
        if self.task is not None:
            self.task.cancel()
        self.tool.cache.forget()
