"""The module across *Close scene* and scene loads (issue 32, item 9).

A scene close removes every node (``vtkMRMLScene::Clear``, ``Libs/MRML/Core/vtkMRMLScene.cxx``
l. 349-366: ``StartState(CloseState)`` sends ``StartCloseEvent``, the nodes go, ``UniqueIDs`` is
emptied at l. 366 so node IDs restart; ``EndState`` sends ``EndCloseEvent``); loading a scene
(``Import``/``Connect``) ends with ``EndImportEvent``. Slicer's own module template observes the
first two and re-reads its parameter node in ``enter()`` (``Utilities/Templates/Modules/Scripted/
TemplateKey.py`` l. 169-170, 181-184, 194-204); SlicerNNUnet, SlicerMONAIAuto3DSeg and MONAI Label
do likewise.

:class:`SceneWatcher` observes the three events on a scene. :class:`SelectionSync` keeps the
volume, segmentation and ROI selectors and the scene's parameter node in step: the selectors are
written to the node, and restored from it when the module is entered, after a close (a fresh,
empty node) and after a scene was loaded (the loaded scene's node). Between ``StartCloseEvent``
and ``EndCloseEvent`` nothing is written (the node is going away).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Tuple

from .parameterNode import NODE_FIELDS, findParameterNode, selections

__all__ = ["SceneWatcher", "SelectionSync"]

logger = logging.getLogger(__name__)


class SceneWatcher:
    """Calls ``startClose()``, ``endClose()`` and ``endImport()`` on the scene's events (GUI thread).

    Args:
        scene: a ``vtkMRMLScene``.
    """

    def __init__(self, scene: Any, startClose: Callable[[], None], endClose: Callable[[], None],
                 endImport: Callable[[], None]) -> None:
        self.scene = scene
        self._tags: List[int] = []
        for event, handler in ((scene.StartCloseEvent, startClose), (scene.EndCloseEvent, endClose),
                               (scene.EndImportEvent, endImport)):
            self._tags.append(scene.AddObserver(event, lambda caller, name, handler=handler: self._call(handler)))

    @staticmethod
    def _call(handler: Callable[[], None]) -> None:
        try:
            handler()
        except Exception:  # an observer must never raise into VTK
            logger.exception("a scene event handler failed")

    def remove(self) -> None:
        for tag in self._tags:
            self.scene.RemoveObserver(tag)
        self._tags = []


class SelectionSync:
    """The selectors and the scene's parameter node, in step.

    Args:
        scene: the application's scene.
        selectors: ``{"volume": selector, "segmentation": ..., "roi": ...}``; each has ``currentNode()``,
            ``setCurrentNode(node)`` and ``connect("currentNodeChanged(vtkMRMLNode*)", slot)``.
        findSelections: ``findSelections(scene)`` -> the selections object (default: the module's
            parameter node through :func:`~SlicerTSKDLib.parameterNode.selections`).
    """

    def __init__(self, scene: Any, selectors: Dict[str, Any],
                 findSelections: Optional[Callable[[Any], Any]] = None) -> None:
        self.scene = scene
        self.selectors = dict(selectors)
        self._find = findSelections or (lambda s: selections(findParameterNode(s)))
        self.parameters: Any = None
        self._restoring = False
        for field, selector in self.selectors.items():
            selector.connect("currentNodeChanged(vtkMRMLNode*)", lambda node, field=field: self._write(field, node))

    def _write(self, field: str, node: Any) -> None:
        if self.parameters is None or self._restoring:
            return
        setattr(self.parameters, field, node)

    def attach(self) -> Any:
        """Find (or make) the scene's parameter node and show its selections; returns the selections object."""
        self.parameters = self._find(self.scene)
        self.restore()
        return self.parameters

    def restore(self) -> None:
        """The selectors show the node's selections (none where it has none), volume first (it picks its
        segmentation, then the node's segmentation wins)."""
        if self.parameters is None:
            return
        self._restoring = True
        try:
            for field in [f for f in NODE_FIELDS if f in self.selectors]:
                self.selectors[field].setCurrentNode(getattr(self.parameters, field))
        finally:
            self._restoring = False

    def startClose(self) -> None:
        """The scene is about to be closed: stop writing into its parameter node."""
        self.parameters = None

    def endClose(self) -> None:
        """The scene was closed: a fresh parameter node (nothing selected)."""
        self.attach()

    def endImport(self) -> None:
        """A scene was loaded: its parameter node's selections (when it saved some) are shown."""
        self.attach()

    def ids(self) -> Tuple[str, str]:
        """``(projectId, modelId)`` of the scene (empty strings when none)."""
        if self.parameters is None:
            return "", ""
        return str(self.parameters.projectId or ""), str(self.parameters.modelId or "")
