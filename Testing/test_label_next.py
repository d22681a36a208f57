"""Issue 18: the Segment panel's "Label next" list. The rows from the backend's suggestions JSON,
the slice index -> RAS arithmetic against slicer-core's own ``vtkMRMLSliceNode.JumpAllSlices`` and
the module's ``sliceIndexForView`` (its inverse), and the widget with the recorded fake Qt: the
computing state polled, a click on the current volume's case jumps and predicts once, a click on a
case the scene lacks downloads and loads it first."""

from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import addImageToScene, importSlicer, pumpUntil
from fakeQt import FakeObject, installFakeQt
from SlicerTSKDLib.segment.labelNext import (COMPUTING, LabelNextLogic, SuggestionRow, answerMessage,
                                             sliceCenterIjk, slicePositionRas, suggestionRows)
from SlicerTSKDLib.segment.segmentationLogic import sliceIndexForView
from SlicerTSKDLib.session import SessionState


def done(*entries, teacher=False):
    return {"status": "done", "case_names": sorted({e[0] for e in entries}), "error": None,
            "result": {"format": "tskd-suggestions", "teacher": {"used": teacher, "note": ""},
                       "suggestions": [{"rank": r, "case": case, "slice": index, "axis": 0, "score": score,
                                        "entropy": score, "disagreement": None, "why": "uncertain student"}
                                       for r, (case, index, score) in enumerate(entries, start=1)],
                       "cases": []}}


def test_rows_from_the_answer_and_what_the_panel_says():
    answer = done(("case_002", 5, 0.61234), ("new_scan", 2, 0.4))
    rows = suggestionRows(answer)
    assert rows == [SuggestionRow(1, "case_002", 5, 0, 0.61234, "uncertain student"),
                    SuggestionRow(2, "new_scan", 2, 0, 0.4, "uncertain student")]
    assert rows[0].texts() == ["case_002", "5", "0.612", "uncertain student"]
    assert answerMessage(answer).startswith("2 slice(s) to label next from 2 unlabelled case(s), ranked by student entropy")
    assert "teacher disagreement" in answerMessage(done(("a", 0, 0.1), teacher=True))
    computing = {"status": COMPUTING, "case_names": ["a", "b"], "result": None}
    assert suggestionRows(computing) == [] and answerMessage(computing) == "Computing suggestions for 2 unlabelled case(s)..."
    failed = {"status": "failed", "error": "case_002.nii.gz: cannot be read", "result": None}
    assert suggestionRows(failed) == [] and answerMessage(failed) == "The suggestions failed: case_002.nii.gz: cannot be read"
    with pytest.raises(ValueError, match="no 'tskd-suggestions' result"):
        suggestionRows({"status": "done", "result": {"format": "other"}})
    broken = done(("a", 1, 0.5))
    del broken["result"]["suggestions"][0]["slice"]
    with pytest.raises(ValueError, match="lacks 'slice'"):
        suggestionRows(broken)


def _obliqueIjkToWorld():
    angle = np.radians(20.0)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag([-1.0, -1.0, 1.0]) @ rotation @ np.diag([0.8, 0.9, 2.5])
    matrix[:3, 3] = [12.0, -7.5, 30.0]
    return matrix


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_slice_position_is_the_inverse_of_the_views_slice_index(axis):
    shape, ijkToWorld = (8, 20, 24), _obliqueIjkToWorld()
    for index in (0, 3, shape[axis] - 1):
        ras = slicePositionRas(ijkToWorld, shape, axis, index)
        sliceToRas = np.eye(4)
        sliceToRas[:3, 2] = ijkToWorld[:3, 2 - axis]  # a view whose normal is the slicing axis
        sliceToRas[:3, 3] = ras
        assert sliceIndexForView(sliceToRas, ijkToWorld, shape, axis) == index
    assert list(sliceCenterIjk(shape, axis, 2)) == [2.0 if a == axis else (shape[a] - 1) / 2.0 for a in (2, 1, 0)]
    with pytest.raises(ValueError, match="outside the volume"):
        sliceCenterIjk(shape, axis, shape[axis])


def _phantomVolume(scene, name, index=0):
    from tskd.data.phantom import PhantomConfig, make_phantom

    image, _ = make_phantom(PhantomConfig(size=(24, 20, 8), spacing=(0.8, 0.9, 2.5), structures=1), index)
    return addImageToScene(scene, image, name)


def _views(scene):
    """Red (axial), Green (coronal) and Yellow (sagittal) slice nodes, as Slicer's layout makes them."""
    views = {}
    for name, normal, transverse in (("Red", (0, 0, 1), (1, 0, 0)), ("Green", (0, 1, 0), (1, 0, 0)),
                                     ("Yellow", (1, 0, 0), (0, 1, 0))):
        node = scene.AddNewNodeByClass("vtkMRMLSliceNode", name)
        node.SetLayoutName(name)
        node.SetSliceToRASByNTP(*normal, *transverse, 0.0, 0.0, 0.0, 0)
        node.UpdateMatrices()
        views[name] = node
    return views


def test_jump_moves_slicer_views_to_the_suggested_slice(slicerScene):
    from SlicerTSKDLib.sceneData import arrayFromMatrix, ijkToWorldArray

    slicer = importSlicer()
    volume = _phantomVolume(slicerScene, "case_002")
    views = _views(slicerScene)
    shape = slicer.util.arrayFromVolume(volume).shape
    ijkToWorld = ijkToWorldArray(volume)
    for axis, view in ((0, "Red"), (1, "Green"), (2, "Yellow")):
        index = shape[axis] - 2
        ras = LabelNextLogic("unused").jumpTo(slicerScene, volume, SuggestionRow(1, "case_002", index, axis, 0.5, "why"))
        for node in views.values():  # every view is centred on the point...
            assert np.allclose(arrayFromMatrix(node.GetSliceToRAS())[:3, 3], ras)
        # ...and the view across the slicing axis shows that very slice
        assert sliceIndexForView(arrayFromMatrix(views[view].GetSliceToRAS()), ijkToWorld, shape, axis) == index


class Selector(FakeObject):
    def __init__(self) -> None:
        super().__init__()
        self.node = None

    def setCurrentNode(self, node) -> None:
        self.node = node


class Data:
    def __init__(self, volume=None) -> None:
        from SlicerTSKDLib.pairing import SegmentationPairs

        self.volumeSelector, self.segmentationSelector = Selector(), Selector()
        self.volumeSelector.node = volume
        self.pairs = SegmentationPairs()

    def volumeNode(self):
        return self.volumeSelector.node

    def segmentationNode(self):
        return self.segmentationSelector.node


class FakeClient:
    server_url = "http://127.0.0.1:9"

    def __init__(self, answers, image) -> None:
        self.answers, self.image = list(answers), image
        self.asked, self.downloaded, self.uploaded = [], [], []

    def suggestions(self, projectId, model_id=None, retry=False):
        self.asked.append((projectId, model_id, retry))
        return self.answers.pop(0)

    def upload_case(self, projectId, name, imagePath, labelPath=None, replace=False, **kwargs):
        from tskd.data.image import read_image

        self.uploaded.append((projectId, name, read_image(imagePath).array.shape, labelPath))
        return {"name": name, "labelled": False}

    def download_case_image(self, projectId, name, dest, **kwargs):
        from tskd.data.image import write_image

        self.downloaded.append((projectId, name))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        return str(write_image(self.image, dest))


def test_the_list_polls_then_jumps_predicts_once_and_loads_missing_cases(monkeypatch, tmp_path, slicerScene):
    from tskd.data.image import read_image
    from tskd.data.phantom import PhantomConfig, make_phantom

    installFakeQt(monkeypatch)
    slicer = importSlicer()
    from SlicerTSKDLib.segment.labelNextWidget import LabelNextWidget

    current = _phantomVolume(slicerScene, "case_002")
    views = _views(slicerScene)
    other, _ = make_phantom(PhantomConfig(size=(24, 20, 10), spacing=(1.0, 1.0, 2.0), structures=1), 3)
    answers = [{"status": COMPUTING, "case_names": ["case_002", "new_scan"], "result": None},
               done(("case_002", 5, 0.6), ("new_scan", 1, 0.5), ("case_002", 1, 0.3))]
    session = SessionState()
    session.client, session.project = FakeClient(answers, other), {"id": "p1"}
    errors = []
    session.errors.display = errors.append
    data, predicted, loaded = Data(current), [], []

    def loader(path, name):
        loaded.append(name)
        return addImageToScene(slicerScene, read_image(path), name)

    shown = []
    logic = LabelNextLogic(str(tmp_path / "cases"), loader=loader, show=lambda volume, fit: shown.append((volume, fit)))
    widget = LabelNextWidget(FakeObject(), session, data, logic, currentModel=lambda: {"id": "m1"},
                             segment=lambda: predicted.append(data.volumeNode().GetName()))
    widget.refreshButton.trigger("clicked()")
    pumpUntil(session)
    assert session.client.asked == [("p1", "m1", True)]  # the click retries a failure
    assert widget.statusLabel.text == "Computing suggestions for 2 unlabelled case(s)..." and widget.pollTimer.active
    assert widget.table.tableTexts() == []
    widget.pollTimer.trigger("timeout()")
    pumpUntil(session)
    assert session.client.asked[-1] == ("p1", "m1", False)  # the poll never does
    assert widget.table.tableTexts() == [["case_002", "5", "0.600", "uncertain student"],
                                         ["new_scan", "1", "0.500", "uncertain student"],
                                         ["case_002", "1", "0.300", "uncertain student"]]

    widget.table.trigger("cellClicked(int,int)", 0, 2)  # the current volume: jump, and show the student's result
    red = slicer.util.arrayFromVolume(current).shape
    from SlicerTSKDLib.sceneData import arrayFromMatrix, ijkToWorldArray

    assert sliceIndexForView(arrayFromMatrix(views["Red"].GetSliceToRAS()), ijkToWorldArray(current), red, 0) == 5
    assert predicted == ["case_002"] and widget.statusLabel.text == "'case_002', slice 5: uncertain student."
    widget.table.trigger("cellClicked(int,int)", 2, 0)  # the same volume again: jump only (corrections are kept)
    assert sliceIndexForView(arrayFromMatrix(views["Red"].GetSliceToRAS()), ijkToWorldArray(current), red, 0) == 1
    assert predicted == ["case_002"]

    data.segmentationSelector.node = "a segmentation of case_002"
    widget.table.trigger("cellClicked(int,int)", 1, 0)  # not in the scene: downloaded, loaded, jumped to, predicted
    pumpUntil(session)
    assert session.client.downloaded == [("p1", "new_scan")] and loaded == ["new_scan"]
    volume = data.volumeNode()
    assert volume.GetName() == "new_scan" and data.segmentationNode() is None  # not the old volume's segmentation
    assert sliceIndexForView(arrayFromMatrix(views["Red"].GetSliceToRAS()), ijkToWorldArray(volume),
                             slicer.util.arrayFromVolume(volume).shape, 0) == 1
    assert predicted == ["case_002", "new_scan"]
    assert os.path.isfile(logic.casePath("p1", "new_scan")) and errors == []

    widget.table.trigger("cellClicked(int,int)", 0, 0)  # back to case_002, in the scene: no download, no new prediction
    assert data.volumeNode().GetID() == current.GetID() and session.client.downloaded == [("p1", "new_scan")]
    assert predicted == ["case_002", "new_scan"]
    for node in views.values():  # every view tilted: the closest one is rotated onto the volume's slices (issue 32)
        node.SetSliceToRASByNTP(0.0, 0.5, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0)
        node.UpdateMatrices()
    widget.table.trigger("cellClicked(int,int)", 0, 0)
    assert widget.statusLabel.text == "'case_002', slice 5: uncertain student."
    assert any(sliceIndexForView(arrayFromMatrix(node.GetSliceToRAS()), ijkToWorldArray(current), red, 0) == 5
               for node in views.values())
    # the case itself is shown in the views (fitted when the volume changed)
    assert [(node.GetName(), fit) for node, fit in shown] == [("case_002", False), ("case_002", False), ("new_scan", True),
                                                              ("case_002", True), ("case_002", False)]
    changed = []
    session.casesChanged.connect(lambda: changed.append(True))
    widget.addVolumeButton.trigger("clicked()")  # the selected volume, uploaded without a label to be ranked
    pumpUntil(session)
    assert session.client.uploaded == [("p1", "case_002", slicer.util.arrayFromVolume(current).shape, None)]
    assert widget.statusLabel.text == "Added 'case_002' without a label: Refresh suggestions to rank it."
    assert changed == [True] and widget.addVolumeButton.enabled and errors == []
    session.setProject({"id": "p2"})
    assert widget.table.tableTexts() == [] and not widget.pollTimer.active


def _projectWithAModel(client, tmp_path, projectName, unlabelledName):
    """A project on the real backend with two labelled phantom cases, one unlabelled case and a finished
    (fake) training job: ``(project, job row, phantom config)``; phantom ``i`` is the ``i``-th case."""
    from tskd.data.image import write_image
    from tskd.data.phantom import PhantomConfig, make_phantom

    from tests.service.helpers import project_labels, wait_state

    project = client.create_project(projectName, project_labels())
    config = PhantomConfig(size=(32, 32, 8), spacing=(1.0, 1.0, 2.5), structures=2)
    for index, name in enumerate(("case_000", "case_001", unlabelledName)):
        image, label = make_phantom(config, index)
        imagePath = write_image(image, tmp_path / "{}.nii.gz".format(name))
        labelPath = write_image(label, tmp_path / "{}-label.nii.gz".format(name)) if index < 2 else None
        client.upload_case(project["id"], name, str(imagePath), None if labelPath is None else str(labelPath))
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 2, "step_s": 0.01}})
    model = wait_state(client, job["id"], ("done", "failed"))
    assert model["state"] == "done", model
    return project, model, config


def test_with_a_real_backend_the_list_ranks_the_unlabelled_case_and_loads_it(monkeypatch, tmp_path, slicerScene,
                                                                           serviceServer):
    """The whole chain: the module's client, the suggestions route computing in the backend, the widget
    polling it, a click downloading the case from the backend and jumping to its slice."""
    from tskd.data.image import read_image
    from tskd.data.phantom import make_phantom

    installFakeQt(monkeypatch)
    slicer = importSlicer()
    from SlicerTSKDLib.sceneData import arrayFromMatrix, ijkToWorldArray
    from SlicerTSKDLib.segment.labelNextWidget import LabelNextWidget

    client = serviceServer.client()
    project, model, config = _projectWithAModel(client, tmp_path, "label-next", "unlabelled_scan")

    views = _views(slicerScene)
    session = SessionState()
    session.client, session.project = client, client.get_project(project["id"])
    errors, predicted = [], []
    session.errors.display = errors.append
    data = Data(None)
    logic = LabelNextLogic(str(tmp_path / "cases"),
                           loader=lambda path, name: addImageToScene(slicerScene, read_image(path), name),
                           show=lambda volume, fit: None)
    widget = LabelNextWidget(FakeObject(), session, data, logic, currentModel=lambda: {"id": model["model_id"]},
                             segment=lambda: predicted.append(data.volumeNode().GetName()))
    widget.refreshButton.trigger("clicked()")
    pumpUntil(session, lambda: bool(widget.rows) or errors, timers=[widget.pollTimer], timeout=60)
    assert errors == [] and {row.case for row in widget.rows} == {"unlabelled_scan"}
    assert widget.statusLabel.text.endswith("from 1 unlabelled case(s), ranked by student entropy. Click one to go to it.")
    first = widget.rows[0]
    widget.table.trigger("cellClicked(int,int)", 0, 0)
    pumpUntil(session)
    volume = data.volumeNode()
    assert volume is not None and volume.GetName() == "unlabelled_scan" and predicted == ["unlabelled_scan"]
    assert np.array_equal(slicer.util.arrayFromVolume(volume), make_phantom(config, 2)[0].array)
    assert sliceIndexForView(arrayFromMatrix(views["Red"].GetSliceToRAS()), ijkToWorldArray(volume),
                             slicer.util.arrayFromVolume(volume).shape, first.axis) == first.sliceIndex


def test_take_a_suggestion_correct_it_submit_it_and_it_leaves_the_ranking_with_no_duplicate(monkeypatch, tmp_path,
                                                                                           slicerScene, serviceServer):
    """Issue 32, item 4 (acceptance), against a real backend on loopback: a suggestion is taken (the case is
    downloaded, shown and tagged; the student's result is the starting point), corrected, submitted with
    "Submit and go to next"; the case is then labelled once under its own name (replaced, no ``<case>_2``),
    the list goes on to the next case, and the new ranking no longer has it. A volume with a DICOM-style
    name uploaded to be ranked is found again through its tag (not downloaded a second time)."""
    from tskd.data.image import read_image
    from tskd.data.phantom import make_phantom

    installFakeQt(monkeypatch)
    slicer = importSlicer()
    import qt
    from SlicerTSKDLib import sceneData
    from SlicerTSKDLib.segment.labelNextWidget import LabelNextWidget

    client = serviceServer.client()
    project, model, config = _projectWithAModel(client, tmp_path, "label-next-loop", "scan_a")

    _views(slicerScene)
    session = SessionState()
    session.client, session.project = client, client.get_project(project["id"])
    errors, downloads = [], []
    session.errors.display = errors.append
    dicom = addImageToScene(slicerScene, make_phantom(config, 3)[0], "3: AX T1")  # a DICOM series' name
    data = Data(dicom)

    def predict():  # the student's result as the starting point: the phantom's label, in a new segmentation
        volume = data.volumeNode()
        segmentation = sceneData.newSegmentationFor(volume, volume.GetName() + " TS-KD")
        ids = sceneData.ensureSegments(segmentation, [(l["name"], l.get("color") or (1, 0, 0))
                                                      for l in project["labels"] if l["value"] > 0])
        label = make_phantom(config, 2 if volume.GetName() == "scan_a" else 3)[1].array
        sceneData.importIndexArray(label, volume, segmentation, ids)
        data.segmentationSelector.setCurrentNode(segmentation)
        data.pairs.remember(volume, segmentation)

    def loader(path, name):
        downloads.append(name)
        return addImageToScene(slicerScene, read_image(path), name)

    logic = LabelNextLogic(str(tmp_path / "cases"), loader=loader, show=lambda volume, fit: None)
    widget = LabelNextWidget(FakeObject(), session, data, logic, currentModel=lambda: {"id": model["model_id"]},
                             segment=predict)
    widget.addVolumeButton.trigger("clicked()")  # "3: AX T1" uploaded to be ranked, as the case 3_AX_T1
    pumpUntil(session)
    assert errors == [] and client.get_case(project["id"], "3_AX_T1")["labelled"] is False
    data.volumeSelector.node = None
    widget.refreshButton.trigger("clicked()")
    pumpUntil(session, lambda: bool(widget.rows) or errors, timers=[widget.pollTimer], timeout=60)
    assert errors == [] and {row.case for row in widget.rows} == {"scan_a", "3_AX_T1"}

    first = next(i for i, row in enumerate(widget.rows) if row.case == "scan_a")
    widget.table.trigger("cellClicked(int,int)", first, 0)  # take the suggestion
    pumpUntil(session)
    volume = data.volumeNode()
    assert volume.GetName() == "scan_a" and downloads == ["scan_a"]
    segmentation = data.segmentationNode()
    assert segmentation is not None and segmentation.GetName() == "scan_a TS-KD"
    ids = [segmentId for segmentId, _, _ in sceneData.segmentList(segmentation)]
    corrected = sceneData.exportSegmentsAsIndexArray(segmentation, ids, volume)
    corrected[4, 0:6, 0:6] = 1  # the user's correction
    sceneData.importIndexArray(corrected, volume, segmentation, ids)

    widget.submitButton.trigger("clicked()")  # submit and go to next
    pumpUntil(session, lambda: errors or widget.statusLabel.text.endswith("from 1 unlabelled case(s), ranked by "
                                                                          "student entropy. Click one to go to it."),
              timers=[widget.pollTimer], timeout=60)  # the new ranking has come
    pumpUntil(session)
    assert errors == [], errors
    cases = client.list_cases(project["id"])
    names = sorted(case["name"] for case in cases)
    assert names == ["3_AX_T1", "case_000", "case_001", "scan_a"]  # no scan_a_2
    assert client.get_case(project["id"], "scan_a")["labelled"] is True
    stored = tmp_path / "stored-label.nii.gz"
    client.download_case_label(project["id"], "scan_a", str(stored))
    values = {int(l["value"]) for l in project["labels"]}
    assert np.array_equal(read_image(str(stored), kind="label").array, corrected) and values >= {1, 2}
    # the case left the ranking; the list went on to the next case, the one already in the scene (no download)
    assert {row.case for row in widget.rows} == {"3_AX_T1"}
    assert data.volumeNode() is dicom and downloads == ["scan_a"]
    assert all(asked[1] != "Submit" for asked in qt.QMessageBox.asked)  # its own segmentation: nothing asked
    assert slicer is not None
