"""The module's selections saved with the scene: a ``vtkMRMLScriptedModuleNode`` parameter node (logic layer).

Fields: the volume, segmentation and ROI (node references) and the project and model ids (text).
Inside Slicer >= 5.4 they are read and written through ``slicer.parameterNodeWrapper``, the way
the ExtensionWizard's scripted template does (``Utilities/Templates/Modules/Scripted/TemplateKey.py``:
``@parameterNodeWrapper class TemplateKeyParameterNode`` with typed fields, and the logic's
``getParameterNode()`` returning ``TemplateKeyParameterNode(super().getParameterNode())``).
Where the wrapper is missing (older Slicer, slicer-core), :class:`SelectionStore` reads and writes
the same node in the same layout as the wrapper's serializers
(``Base/Python/slicer/parameterNodeWrapper/serializers.py``: ``NodeSerializer.write`` sets the
parameter ``name`` to ``""`` and the node reference role ``name``; ``StringSerializer.write`` sets
the parameter ``name``; a top-level field has no prefix, ``wrapper.py``
``_Parameter.name = f"{prefix or ''}{basename}"``), so a scene saved by either reads back in the other.

The node is the module's singleton (``GetSingletonNode(moduleName, "vtkMRMLScriptedModuleNode")``
with the ``ModuleName`` attribute, as ``ScriptedLoadableModuleLogic.getParameterNode`` in
``Base/Python/slicer/ScriptedLoadableModule.py`` finds and creates it).
"""

# no "from __future__ import annotations": parameterNodeWrapper reads the field annotations as types, and
# the wrapper class is made inside wrapperClass(), whose local imports string annotations could not see

import logging
from typing import Any, Dict, Optional

__all__ = ["MODULE_NAME", "NODE_FIELDS", "TEXT_FIELDS", "SelectionStore", "findParameterNode", "wrapperClass",
           "selections"]

logger = logging.getLogger(__name__)

MODULE_NAME = "SlicerTSKD"

#: node-reference fields and the node class each holds
NODE_FIELDS = {"volume": "vtkMRMLScalarVolumeNode", "segmentation": "vtkMRMLSegmentationNode",
               "roi": "vtkMRMLMarkupsROINode"}
#: text fields (ids on the backend; empty: none chosen)
TEXT_FIELDS = ("projectId", "modelId")


def findParameterNode(scene: Any, moduleName: str = MODULE_NAME) -> Any:
    """The module's singleton ``vtkMRMLScriptedModuleNode`` in ``scene`` (created when missing)."""
    import slicer

    node = scene.GetSingletonNode(moduleName, "vtkMRMLScriptedModuleNode")
    if node is None:
        node = slicer.vtkMRMLScriptedModuleNode()
        node.SetSingletonTag(moduleName)
        node.SetAttribute("ModuleName", moduleName)
        node.SetName(moduleName)
        node = scene.AddNode(node)
    elif node.GetAttribute("ModuleName") != moduleName:  # removed by a scene close
        node.SetAttribute("ModuleName", moduleName)
    return node


class SelectionStore:
    """The selections on a parameter node, in ``parameterNodeWrapper``'s layout; attributes as the wrapper's.

    ``store.volume = node`` / ``store.volume`` (None when unset or removed), ``store.projectId = "..."``.
    """

    def __init__(self, parameterNode: Any) -> None:
        object.__setattr__(self, "parameterNode", parameterNode)

    def __getattr__(self, name: str) -> Any:
        node = self.__dict__["parameterNode"]
        if name in NODE_FIELDS:
            return node.GetNodeReference(name)
        if name in TEXT_FIELDS:
            return node.GetParameter(name) or ""
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        node = self.parameterNode
        if name in NODE_FIELDS:
            if value is not None and not value.IsA(NODE_FIELDS[name]):
                raise TypeError("{} must be a {}, got {}".format(name, NODE_FIELDS[name], value.GetClassName()))
            node.SetParameter(name, "")
            node.SetNodeReferenceID(name, value.GetID() if value is not None else None)
        elif name in TEXT_FIELDS:
            node.SetParameter(name, "" if value is None else str(value))
        else:
            raise AttributeError("no parameter {!r}".format(name))


_WRAPPER: Dict[str, Any] = {}


def wrapperClass() -> Optional[type]:
    """``SlicerTSKDParameterNode`` made with ``slicer.parameterNodeWrapper`` (Slicer >= 5.4), else None."""
    if "class" not in _WRAPPER:
        try:
            from slicer import vtkMRMLMarkupsROINode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
            from slicer.parameterNodeWrapper import parameterNodeWrapper
        except ImportError:
            _WRAPPER["class"] = None
        else:
            @parameterNodeWrapper
            class SlicerTSKDParameterNode:
                """The module's selections (see the module docstring)."""

                volume: vtkMRMLScalarVolumeNode
                segmentation: vtkMRMLSegmentationNode
                roi: vtkMRMLMarkupsROINode
                projectId: str = ""
                modelId: str = ""

            _WRAPPER["class"] = SlicerTSKDParameterNode
    return _WRAPPER["class"]


def selections(parameterNode: Any) -> Any:
    """The selections of ``parameterNode``: the wrapper (Slicer >= 5.4) or :class:`SelectionStore`."""
    wrapper = wrapperClass()
    return wrapper(parameterNode) if wrapper is not None else SelectionStore(parameterNode)
