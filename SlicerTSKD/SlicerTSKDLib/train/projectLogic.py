"""Projects and their training cases, from what the user has in the scene.

A project's labels are taken from a segmentation's segments: name, colour, and label value = the
segment's position (1, 2, ...); background (0) is added by the server. "Add as training case"
exports the selected volume and the segments that match the project's labels (by name) as a label
map on the volume's grid (:func:`prepareTrainingCase`, on the GUI thread: it uses the scene, and
copies the arrays), then a worker thread writes both files (:func:`writeTrainingCase`, gzip NRRD
without VTK), uploads them and removes them (:func:`writeAndUploadTrainingCase`).

:class:`ProjectLogic` holds the "Project and training cases" panel's decisions (which project to
show, the texts it shows, what a new project or a new case is made of); the panel
(``projectWidget.py``) gets it in its constructor and only copies its answers into Qt widgets.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import sceneData
from ..backgroundTasks import TaskCancelled
from ..backend.client import TSKDClient
from ..volumeFiles import VolumeSnapshot, WriteCancelled, writeNrrd

__all__ = [
    "ProjectProblem",
    "ProjectLogic",
    "LAST_PROJECT_SETTING",
    "NO_SEGMENTATION_FOR_PROJECT",
    "NO_CASE_SELECTION",
    "labelsFromSegments",
    "caseLabelMapping",
    "safeCaseName",
    "uniqueCaseName",
    "caseRows",
    "projectTitle",
    "TrainingCaseData",
    "CASE_ATTRIBUTE",
    "PROJECT_ATTRIBUTE",
    "tagCase",
    "caseOf",
    "TERMINOLOGY_SETTING",
    "projectTerminology",
    "prepareTrainingCase",
    "writeTrainingCase",
    "writeAndUploadTrainingCase",
    "exportTrainingCase",
    "uploadTrainingCase",
]

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

#: the ``QSettings`` key of the project shown last (used when the scene names none)
LAST_PROJECT_SETTING = "SlicerTSKD/Project/LastProject"
NO_SEGMENTATION_FOR_PROJECT = "Select a segmentation: its segments become the project's labels."
NO_CASE_SELECTION = "Select the volume and its segmentation first."


#: The project setting with the labels' terminology entries (``{label name: serialized entry}``).
TERMINOLOGY_SETTING = "terminology"


def projectTerminology(project: Optional[Dict[str, Any]]) -> Dict[str, str]:
    """The project's ``{label name: terminology entry}`` (empty when it has none)."""
    settings = (project or {}).get("settings")
    value = settings.get(TERMINOLOGY_SETTING) if isinstance(settings, dict) else None
    return {str(k): str(v) for k, v in value.items() if v} if isinstance(value, dict) else {}


class ProjectProblem(Exception):
    """The project or the case cannot be made as asked; the message says what to change."""


def labelsFromSegments(segments: Sequence[Tuple[str, Sequence[float]]]) -> List[Dict[str, Any]]:
    """A project's labels from segments ``[(name, (r, g, b) in 0..1), ...]``: value = position + 1.

    Raises:
        ProjectProblem: no segments, an empty name, or two segments with the same name.
    """
    if not segments:
        raise ProjectProblem("The segmentation has no segments: add one segment per structure to learn, then try again.")
    labels, seen = [], set()
    for index, (name, color) in enumerate(segments):
        name = str(name).strip()
        if not name:
            raise ProjectProblem("Segment {} has no name: name every segment.".format(index + 1))
        if name.lower() in seen:
            raise ProjectProblem("Two segments are called '{}': give every segment its own name.".format(name))
        if name.lower() == "background":
            raise ProjectProblem("'background' is reserved for unlabelled voxels: rename that segment.")
        seen.add(name.lower())
        labels.append({"value": index + 1, "name": name, "color": [round(float(c), 4) for c in color]})
    return labels


def caseLabelMapping(projectLabels: Sequence[Dict[str, Any]], segmentNames: Sequence[str]) -> List[int]:
    """The project's label value for each segment (matched by name, ignoring case).

    Args:
        projectLabels: the project's labels (``{"value", "name", ...}``; value 0 is background).
        segmentNames: the segmentation's segment names, in order.

    Raises:
        ProjectProblem: no segments, or segments whose names are not labels of the project.
    """
    byName = {str(label["name"]).strip().lower(): int(label["value"]) for label in projectLabels if int(label["value"]) > 0}
    if not segmentNames:
        raise ProjectProblem("The segmentation has no segments: label the structures first.")
    unknown = [name for name in segmentNames if name.strip().lower() not in byName]
    if unknown:
        known = ", ".join(str(label["name"]) for label in projectLabels if int(label["value"]) > 0)
        raise ProjectProblem(
            "The segment(s) {} are not labels of this project (its labels: {}). Rename them to one of the project's "
            "labels, or delete them before adding the case.".format(", ".join("'{}'".format(n) for n in unknown), known)
        )
    return [byName[name.strip().lower()] for name in segmentNames]


def safeCaseName(text: str) -> str:
    """A case name the server accepts (letters, digits, ``_``, ``-``, ``.``; no leading dot)."""
    name = _UNSAFE.sub("_", str(text).strip()).strip("_")
    name = re.sub(r"\.\.+", ".", name).lstrip(".")
    return name[:100] or "case"


def uniqueCaseName(text: str, existing: Sequence[str]) -> str:
    """:func:`safeCaseName` of ``text``, with ``_2``, ``_3``... added when the project has it already."""
    base = safeCaseName(text)
    taken = {name.lower() for name in existing}
    name, number = base, 2
    while name.lower() in taken:
        name = "{}_{}".format(base, number)
        number += 1
    return name


def caseRows(cases: Sequence[Dict[str, Any]]) -> List[Tuple[str, str, str]]:
    """Rows of the case list: ``(name, "labelled"/"image only", size text)`` sorted by name."""
    rows = []
    for case in sorted(cases, key=lambda c: str(c.get("name", ""))):
        size = case.get("size") or []
        rows.append((str(case.get("name", "?")), "labelled" if case.get("labelled") else "image only",
                     " x ".join(str(n) for n in size)))
    return rows


def projectTitle(project: Dict[str, Any]) -> str:
    """``"liver (3 cases, 3 labelled)"`` for the project chooser."""
    cases, labelled = project.get("cases"), project.get("labelled_cases")
    if cases is None:
        return str(project.get("name", "?"))
    return "{} ({} case{}, {} labelled)".format(project.get("name", "?"), cases, "" if cases == 1 else "s", labelled or 0)


#: Attributes of a volume node that is a case of a project (set when it is downloaded from or uploaded to it)
CASE_ATTRIBUTE = "SlicerTSKD.Case"
PROJECT_ATTRIBUTE = "SlicerTSKD.Project"


def tagCase(volumeNode: Any, projectId: str, caseName: str) -> None:
    """Mark ``volumeNode`` as the case ``caseName`` of the project (MRML node attributes: saved with the scene)."""
    volumeNode.SetAttribute(PROJECT_ATTRIBUTE, str(projectId))
    volumeNode.SetAttribute(CASE_ATTRIBUTE, str(caseName))


def caseOf(volumeNode: Any, projectId: str) -> Optional[str]:
    """The case of project ``projectId`` that ``volumeNode`` is (None: not tagged for that project)."""
    if volumeNode is None or volumeNode.GetAttribute(PROJECT_ATTRIBUTE) != str(projectId):
        return None
    return volumeNode.GetAttribute(CASE_ATTRIBUTE) or None


class TrainingCaseData:
    """A training case taken from the scene on the GUI thread: the volume's voxels and the label map, copied.

    Written to files by :func:`writeTrainingCase` in a worker thread (no scene, no VTK there).
    """

    def __init__(self, image: VolumeSnapshot, label: VolumeSnapshot) -> None:
        self.image = image
        self.label = label


def prepareTrainingCase(volumeNode: Any, segmentationNode: Any,
                        projectLabels: Sequence[Dict[str, Any]]) -> TrainingCaseData:
    """The volume and its segmentation (on the volume's grid, with the project's label values), copied.

    Runs on the GUI thread (it uses the scene); the files are written by :func:`writeTrainingCase`.

    Raises:
        ProjectProblem: segments that are not labels of the project, or nothing labelled.
        SceneError: the export failed.
    """
    if volumeNode is None or segmentationNode is None:
        raise ProjectProblem("Select a volume and its segmentation.")
    segments = sceneData.segmentList(segmentationNode)
    values = caseLabelMapping(projectLabels, [name for _, name, _ in segments])
    index = sceneData.exportSegmentsAsIndexArray(segmentationNode, [segmentId for segmentId, _, _ in segments], volumeNode)
    if not index.any():
        raise ProjectProblem("The segments of '{}' are empty where '{}' lies: nothing to learn from.".format(
            segmentationNode.GetName(), volumeNode.GetName()))
    lookup = np.asarray([0] + values, dtype=np.uint16 if max(values) > 255 else np.uint8)
    image = sceneData.volumeSnapshot(volumeNode)
    return TrainingCaseData(image, image.withArray(lookup[index], copy=False))


def writeTrainingCase(case: TrainingCaseData, caseName: str, folder: Optional[str] = None,
                      progress: Optional[Callable[[float], None]] = None,
                      cancel: Optional[Callable[[], bool]] = None) -> Tuple[str, str]:
    """Write ``<folder>/<case>.nrrd`` and ``<folder>/<case>-label.nrrd`` (any thread; gzip NRRD as Slicer writes).

    ``folder`` defaults to a new temporary folder (removed by :func:`uploadTrainingCase`).
    ``progress`` gets the fraction of both files written.

    Returns:
        ``(imagePath, labelPath)``.
    """
    folder = folder or tempfile.mkdtemp(prefix="SlicerTSKD-case-")
    name = safeCaseName(caseName)
    sizes = [float(case.image.array.nbytes), float(case.label.array.nbytes)]
    total = max(sum(sizes), 1.0)

    def part(offset: float, size: float) -> Optional[Callable[[float], None]]:
        if progress is None:
            return None
        return lambda fraction: progress((offset + fraction * size) / total)

    imagePath = writeNrrd(case.image, os.path.join(folder, name + ".nrrd"), progress=part(0.0, sizes[0]), cancel=cancel)
    labelPath = writeNrrd(case.label, os.path.join(folder, name + "-label.nrrd"), progress=part(sizes[0], sizes[1]),
                          cancel=cancel)
    return imagePath, labelPath


def exportTrainingCase(volumeNode: Any, segmentationNode: Any, projectLabels: Sequence[Dict[str, Any]],
                       caseName: str, folder: Optional[str] = None) -> Tuple[str, str]:
    """:func:`prepareTrainingCase` then :func:`writeTrainingCase` on the calling thread (scripts, tests).

    Returns:
        ``(imagePath, labelPath)``.
    """
    return writeTrainingCase(prepareTrainingCase(volumeNode, segmentationNode, projectLabels), caseName, folder)


def writeAndUploadTrainingCase(task: Any, client: TSKDClient, projectId: str, caseName: str, case: TrainingCaseData,
                               replace: bool = False) -> Dict[str, Any]:
    """Worker-thread task (``passTask=True``): write the case's files (progress 0..0.5), upload them, remove them."""

    def progress(fraction: float) -> None:
        task.progress = 0.5 * fraction

    try:
        imagePath, labelPath = writeTrainingCase(case, caseName, progress=progress, cancel=task.isCancelled)
    except WriteCancelled:
        raise TaskCancelled("Uploading case") from None
    task.progress = 0.5
    result = uploadTrainingCase(client, projectId, caseName, imagePath, labelPath, replace=replace,
                                cancel=task.isCancelled, progress=_uploadProgress(task, 0.5, 1.0))
    task.progress = 1.0
    return result


def _uploadProgress(task: Any, start: float, end: float) -> Callable[[int, int], None]:
    """``progress(sent, total)`` of a transfer mapped onto ``task.progress`` from ``start`` to ``end``."""

    def progress(done: int, total: int) -> None:
        if total:
            task.progress = start + (end - start) * min(done / float(total), 1.0)

    return progress


def uploadTrainingCase(client: TSKDClient, projectId: str, caseName: str, imagePath: str, labelPath: Optional[str],
                       replace: bool = False, removeFiles: bool = True, cancel: Optional[Callable[[], bool]] = None,
                       progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
    """Upload a case written by :func:`exportTrainingCase` (blocking: call it from a worker thread).

    The files' folder is removed afterwards when ``removeFiles`` is true (whatever the outcome).
    ``cancel`` stops the upload at its next 1 MiB chunk; ``progress(sent, total)`` follows it.
    """
    try:
        return client.upload_case(projectId, safeCaseName(caseName), imagePath, labelPath, replace=replace,
                                  cancel=cancel, progress=progress)
    finally:
        if removeFiles:
            shutil.rmtree(os.path.dirname(os.path.abspath(imagePath)), ignore_errors=True)


class ProjectLogic:
    """The decisions of the "Project and training cases" panel, without Qt.

    Args:
        settings: where the last project is remembered (``qt.QSettings()`` in Slicer; default: a
            :class:`~SlicerTSKDLib.settingsStore.MemorySettings`).
    """

    def __init__(self, settings: Any = None) -> None:
        from ..settingsStore import MemorySettings

        self.settings = settings if settings is not None else MemorySettings()

    # -------------------------------------------------------------- projects
    def chooseProject(self, projects: Sequence[Dict[str, Any]], *wanted: Optional[str]) -> Tuple[List[Dict[str, Any]], int]:
        """The chooser's projects (by name) and the index to show: the first of ``wanted`` (an id just
        created, the scene's) that exists, else the project shown last, else the first; -1 when none."""
        ordered = sorted(projects, key=lambda p: str(p.get("name", "")).lower())
        ids = [str(p["id"]) for p in ordered]
        for projectId in list(wanted) + [str(self.settings.value(LAST_PROJECT_SETTING, "") or "")]:
            if projectId and str(projectId) in ids:
                return ordered, ids.index(str(projectId))
        return ordered, 0 if ordered else -1

    def remember(self, project: Optional[Dict[str, Any]]) -> None:
        """The project is shown: the next session starts with it when the scene names none."""
        if project is not None:
            self.settings.setValue(LAST_PROJECT_SETTING, str(project["id"]))

    @staticmethod
    def labelsText(project: Optional[Dict[str, Any]]) -> str:
        """``"liver, spleen"``: the project's structures (background left out)."""
        return ", ".join(str(l["name"]) for l in (project or {}).get("labels", []) if int(l["value"]) > 0)

    @staticmethod
    def newProjectLabels(segmentationNode: Any) -> List[Dict[str, Any]]:
        """The labels of a project made from the selected segmentation (GUI thread: it reads the scene).

        Raises:
            ProjectProblem: no segmentation is selected, or its segments cannot be labels.
        """
        if segmentationNode is None:
            raise ProjectProblem(NO_SEGMENTATION_FOR_PROJECT)
        return labelsFromSegments([(name, color) for _, name, color in sceneData.segmentList(segmentationNode)])

    @staticmethod
    def newProjectSettings(segmentationNode: Any) -> Dict[str, Any]:
        """The new project's settings: the segments' terminology entries (``{"terminology": {name: entry}}``,
        issue 32, item 13), so the project's results carry the codes the clinician chose in Slicer."""
        if segmentationNode is None:
            return {}
        segmentation = segmentationNode.GetSegmentation()
        entries = {}
        for segmentId, name, _ in sceneData.segmentList(segmentationNode):
            entry = sceneData.segmentTerminology(segmentation.GetSegment(segmentId))
            if entry:
                entries[name.strip()] = entry
        return {TERMINOLOGY_SETTING: entries} if entries else {}

    @staticmethod
    def newProjectQuestion(labels: Sequence[Dict[str, Any]]) -> str:
        return "Project name (labels: {}):".format(", ".join(str(label["name"]) for label in labels))

    @staticmethod
    def projectName(answer: Any) -> Optional[str]:
        """The name typed in the dialog, or None (cancelled or blank: nothing is created)."""
        name = str(answer or "").strip()
        return name or None

    @staticmethod
    def withCaseCounts(project: Dict[str, Any], cases: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
        """The project with ``cases`` / ``labelled_cases`` as in its current case list (the server's fields)."""
        updated = dict(project)
        updated["cases"] = len(cases)
        updated["labelled_cases"] = sum(1 for case in cases if case.get("labelled"))
        return updated

    # ----------------------------------------------------------------- cases
    @staticmethod
    def caseToAdd(volumeNode: Any, segmentationNode: Any, project: Dict[str, Any], typedName: str,
                  cases: Sequence[Dict[str, Any]]) -> Tuple[str, TrainingCaseData, bool]:
        """The case's name, its data copied from the scene (GUI thread; the files are written in the
        worker) and whether it replaces a case of the project.

        A volume that is a case of this project (tagged when it was downloaded from or uploaded to it:
        :func:`caseOf`) goes back to that same case, replacing it (issue 32, item 4: a corrected
        suggestion labels the case that was suggested instead of adding ``<case>_2`` beside it). A
        typed name, or a volume the project does not have, gives a new case (typed, else the volume's
        name; made safe and unique in the project).

        Raises:
            ProjectProblem: nothing selected, segments that are not the project's labels, nothing labelled.
            SceneError: the export failed.
        """
        if volumeNode is None or segmentationNode is None:
            raise ProjectProblem(NO_CASE_SELECTION)
        typed = str(typedName or "").strip()
        names = [str(case.get("name")) for case in cases]
        existing = caseOf(volumeNode, str(project.get("id", "")))
        if not typed and existing is not None and existing in names:
            name, replace = existing, True
        else:
            name, replace = uniqueCaseName(typed or volumeNode.GetName(), names), False
        return name, prepareTrainingCase(volumeNode, segmentationNode, project.get("labels", [])), replace

    @staticmethod
    def pairingQuestion(volumeNode: Any, segmentationNode: Any) -> Optional[str]:
        """What to ask before exporting a segmentation drawn on another volume as this volume's label
        (issue 32, item 1; :func:`SlicerTSKDLib.pairing.ownerText`); None: nothing to ask."""
        if volumeNode is None or segmentationNode is None:
            return None
        from .. import pairing

        return pairing.ownerText(segmentationNode, volumeNode)

    @staticmethod
    def uploadText(name: str, progress: Optional[float]) -> Optional[str]:
        """The status line while a case is written (progress 0..0.5) and uploaded (0.5..1); None when unknown."""
        if progress is None:
            return None
        step = "Writing" if progress < 0.5 else "Uploading"
        return "{} '{}'... {}%".format(step, name, int(round(100 * progress)))

    @staticmethod
    def deleteQuestion(name: str) -> str:
        return "Delete the case '{}' from the project?".format(name)
