"""tskd.runtime is shipped into Slicer: Python 3.9 syntax; only the standard library, numpy,
onnxruntime (imported lazily), and the sibling packages preprocess and errors (relative imports)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tskd.runtime

PACKAGE = Path(tskd.runtime.__file__).parent
ALLOWED_TOP = {"numpy"}
ALLOWED_RELATIVE = {"preprocess", "errors"}


def _files():
    files = sorted(PACKAGE.glob("*.py"))
    assert {p.name for p in files} >= {"__init__.py", "package.py", "session.py", "inference.py"}
    return files


def _module_level_imports(tree):
    """Import nodes outside functions and classes (executed when the module is imported)."""
    found = []

    def visit(node, top):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, False)
            else:
                if top and isinstance(child, (ast.Import, ast.ImportFrom)):
                    found.append(child)
                visit(child, top)

    visit(tree, True)
    return found


def test_python39_syntax_and_future_import():
    for path in _files():
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=str(path), feature_version=(3, 9))
        assert "from __future__ import annotations" in source, path
        for node in ast.walk(tree):
            assert not isinstance(node, getattr(ast, "Match", ())), f"{path}: match statement"


def test_imports_are_stdlib_numpy_onnxruntime_or_siblings():
    stdlib = set(sys.stdlib_module_names)
    for path in _files():
        tree = ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 9))
        top_level = {id(node) for node in _module_level_imports(tree)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    continue  # a module of tskd.runtime itself
                if node.level == 2:
                    assert (node.module or "").split(".")[0] in ALLOWED_RELATIVE, f"{path.name} imports ..{node.module}"
                    continue
                assert node.level == 0, f"{path.name}: relative import beyond the parent package"
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in ("onnxruntime", "scipy"):  # scipy: the post-processing's components (Slicer ships it)
                    assert id(node) not in top_level, f"{path.name}: {top} must be imported inside functions"
                    continue
                assert top in stdlib or top in ALLOWED_TOP or top == "__future__", f"{path.name} imports {name}"


def test_runs_without_torch_monai_or_simpleitk(package_014, tmp_path):
    """Import and use the runtime in a fresh interpreter where the heavy packages cannot be imported."""
    folder = package_014[0]
    code = f"""
import sys
for name in ("torch", "monai", "SimpleITK", "scipy", "tskd.data", "tskd.student", "tskd.export"):
    sys.modules[name] = None  # any import of these now raises ImportError
import numpy as np
import tskd.runtime as rt
assert "onnxruntime" not in sys.modules  # imported only when a session is made
package = rt.StudentPackage.load({str(folder)!r})
model = rt.OnnxSegmenter(package, threads=1)
volume = (np.arange(4 * 20 * 24).reshape(4, 20, 24) % 97).astype(np.int16)
labels = rt.segment_volume(model, volume)
live = rt.VolumeSegmenter(model, volume).segment_slice(2)
assert labels.shape == volume.shape and (live == labels[2]).all()
print("ok", sorted(set(np.unique(labels).tolist())))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("ok")



def test_type_unions_only_inside_annotations():
    """``X | Y`` on types fails at run time on Python 3.9 (Slicer) outside postponed annotations."""
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
                for side in (node.left, node.right):
                    is_type = isinstance(side, ast.Name) and side.id in {"int", "float", "str", "None", "bool", "Path"}
                    assert not is_type, f"{path.name}:{node.lineno}: type union outside an annotation"
