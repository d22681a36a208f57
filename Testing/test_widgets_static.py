"""Static checks of the GUI-wiring files, which import ``qt``/``slicer``.

The panels are also run on a recorded fake of Qt (``fakeQt``, ``test_*_widget.py``) with their real
logic objects; here every widget file (also those without a widget test: ``moduleWidget.py``,
``SlicerTSKD.py``) must bind every name it uses (catches typos), and every
``from .module import name`` must exist in that module.
"""

from __future__ import annotations

import ast
import builtins
import importlib

import pytest

from conftest import MODULE_DIR

WIDGET_FILES = sorted((MODULE_DIR / "SlicerTSKDLib").rglob("*Widget.py")) + [MODULE_DIR / "SlicerTSKD.py"]


def packageOf(path) -> list:
    """The package a file's relative imports start from: ``["SlicerTSKDLib", "install"]``..."""
    return list(path.relative_to(MODULE_DIR).parent.parts)


def boundNames(tree: ast.AST) -> set:
    """Every name the file binds anywhere (imports, definitions, arguments, assignments, loops...)."""
    names = set(dir(builtins)) | {"__file__", "__name__"}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return names


@pytest.mark.parametrize("path", WIDGET_FILES, ids=lambda p: p.name)
def test_every_name_used_is_bound(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bound = boundNames(tree)
    unbound = sorted({node.id for node in ast.walk(tree) if isinstance(node, ast.Name)
                      and isinstance(node.ctx, ast.Load) and node.id not in bound})
    assert unbound == [], "{} uses names it never defines or imports: {}".format(path.name, unbound)


@pytest.mark.parametrize("path", WIDGET_FILES, ids=lambda p: p.name)
def test_relative_imports_exist(path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("SlicerTSKDLib")):
            if node.level:  # from .x import / from ..install.x import / from .. import sceneData
                package = packageOf(path)
                base = package[: len(package) - node.level + 1]
                assert base, "{}: relative import above the module folder".format(path.name)
            else:
                base = []
            if node.module is None:
                for alias in node.names:
                    importlib.import_module(".".join(base + [alias.name]))
                continue
            moduleName = ".".join(base + node.module.split("."))
            if moduleName.endswith("Widget"):
                assert (MODULE_DIR.joinpath(*moduleName.split(".")).with_suffix(".py")).is_file(), moduleName
                continue
            module = importlib.import_module(moduleName)
            for alias in node.names:
                assert hasattr(module, alias.name), "{}: {} has no {}".format(path.name, moduleName, alias.name)


def test_the_checker_finds_a_typo():
    tree = ast.parse("import qt\ndef f(a):\n    b = a\n    return qt.QLabel(b, c)\n")
    assert {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)} - boundNames(tree) == {"c"}


@pytest.mark.parametrize("path", WIDGET_FILES, ids=lambda p: p.name)
def test_no_labelled_form_row_is_hidden_by_its_field_alone(path):
    """Issue 14, item 9: Qt 5.15's QFormLayout has no setRowVisible; hiding the field of
    ``addRow("Label:", field)`` leaves the label showing. Hidden rows must have no label of their
    own (put labelled rows in a widget of their own and hide that)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    labelled = set()
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "addRow"
                and len(node.args) == 2 and isinstance(node.args[1], ast.Attribute)):
            labelled.add(node.args[1].attr)
    hidden = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.For) else []
        for target in targets:
            if isinstance(target, ast.Attribute) and target.attr == "visible" and isinstance(target.value, ast.Attribute):
                hidden.add(target.value.attr)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "setVisible" \
                and isinstance(node.func.value, ast.Attribute):
            hidden.add(node.func.value.attr)
        if isinstance(node, ast.For) and isinstance(node.iter, ast.Tuple):  # for w in (self.a, self.b): w.visible = ...
            if any(isinstance(n, ast.Attribute) and n.attr == "visible" for n in ast.walk(node)):
                hidden.update(e.attr for e in node.iter.elts if isinstance(e, ast.Attribute))
    assert not (labelled & hidden), "{} hides the field of a labelled row: {}".format(path.name, sorted(labelled & hidden))
