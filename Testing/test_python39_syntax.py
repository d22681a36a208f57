"""Slicer 5.6/5.8 run Python 3.9: every module file must parse as 3.9, and logic files stay Qt-free.

GUI-wiring files are the module file and files named ``*Widget.py`` in ``SlicerTSKDLib`` and its
sub-packages; every other Lib file is logic and must not import ``qt``, ``ctk``, ``slicer`` or ``vtk`` at module level
(it may inside a function, as ``QProcessRunner`` does), so it can be tested without Slicer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from conftest import MODULE_DIR

SLICER_ONLY = {"qt", "ctk", "slicer", "vtk", "qSlicerSegmentationsModuleWidgetsPythonQt"}
PYTHON_FILES = sorted(p for p in MODULE_DIR.rglob("*.py") if "__pycache__" not in p.parts)
LIB_DIR = MODULE_DIR / "SlicerTSKDLib"
LOGIC_FILES = [p for p in PYTHON_FILES if LIB_DIR in p.parents and not p.name.endswith("Widget.py")]


def moduleName(path: Path) -> str:
    """``SlicerTSKDLib/install/environment.py`` -> ``SlicerTSKDLib.install.environment``."""
    parts = path.relative_to(MODULE_DIR).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def moduleLevelImports(tree: ast.Module) -> set:
    """Top-level package names imported outside functions and classes (including under if/try)."""
    names = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                continue
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
            for field in ("body", "orelse", "finalbody", "handlers"):
                visit(getattr(node, field, []) or [])

    visit(tree.body)
    return names


def test_files_were_found():
    assert len(PYTHON_FILES) >= 10
    assert LIB_DIR / "install" / "environment.py" in LOGIC_FILES
    assert LIB_DIR / "signal.py" in LOGIC_FILES
    assert LIB_DIR / "install" / "installWidget.py" not in LOGIC_FILES


@pytest.mark.parametrize("path", PYTHON_FILES, ids=lambda p: p.relative_to(MODULE_DIR).as_posix())
def test_parses_as_python_3_9(path: Path):
    ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=(3, 9))


@pytest.mark.parametrize("path", LOGIC_FILES, ids=lambda p: p.name)
def test_logic_files_do_not_import_slicer_or_qt(path: Path):
    imported = moduleLevelImports(ast.parse(path.read_text(encoding="utf-8")))
    assert not imported & SLICER_ONLY, "{} imports {} at module level".format(path.name, sorted(imported & SLICER_ONLY))


def test_the_checker_sees_imports_under_if_and_try():
    tree = ast.parse("import os\ntry:\n    import qt\nexcept ImportError:\n    pass\nif True:\n    from slicer import util\ndef f():\n    import ctk\n")
    assert moduleLevelImports(tree) == {"os", "qt", "slicer"}


def test_logic_files_import_outside_slicer():
    import importlib

    for path in LOGIC_FILES:
        importlib.import_module(moduleName(path))
