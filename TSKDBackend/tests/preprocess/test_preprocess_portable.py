"""tskd.preprocess is shipped into Slicer: Python 3.9 syntax, numpy and the standard library only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import tskd.preprocess

PACKAGE = Path(tskd.preprocess.__file__).parent
ALLOWED = {"numpy"}


def _files():
    files = sorted(PACKAGE.glob("*.py"))
    assert len(files) >= 4
    return files


def test_python39_syntax():
    for path in _files():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        assert "from __future__ import annotations" in source, path
        for node in ast.walk(tree):
            assert not isinstance(node, getattr(ast, "Match", ())), f"{path}: match statement"


def test_imports_are_numpy_or_stdlib():
    stdlib = set(sys.stdlib_module_names)
    for path in _files():
        tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 9))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level > 0:  # relative imports stay inside the package
                    continue
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in ALLOWED or top == "__future__", f"{path.name} imports {name}"


def test_runtime_annotations_avoid_union_operator():
    """``X | Y`` is only allowed inside annotations (postponed by the __future__ import)."""
    for path in _files():
        tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 9))
        annotations = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.arg, ast.AnnAssign)) and node.annotation is not None:
                annotations.update(id(n) for n in ast.walk(node.annotation))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns is not None:
                annotations.update(id(n) for n in ast.walk(node.returns))
        for node in ast.walk(tree):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and id(node) not in annotations:
                # a bitwise or on arrays is fine; a union of types is not
                for side in (node.left, node.right):
                    assert not (isinstance(side, ast.Name) and side.id in {"int", "float", "str", "None", "bool"}), (
                        f"{path.name}:{node.lineno}: type union outside an annotation"
                    )


def test_import_loads_no_heavy_packages():
    import subprocess

    code = (
        "import sys, tskd.preprocess; "
        "heavy = [m for m in ('torch', 'monai', 'SimpleITK', 'scipy') if m in sys.modules]; "
        "print(heavy); sys.exit(1 if heavy else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
