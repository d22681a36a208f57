"""The package's layers (docs/architecture.md): a module may import only from its own package and
from the layers below it. Checked on the source, imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import tskd

ROOT = Path(tskd.__file__).parent
FOUNDATION = {"errors", "log", "progress", "config", "atomic", "lazy", "processes"}
MODELS = {"teacher", "synthesis", "student"}
BELOW_PIPELINE = FOUNDATION | MODELS | {"preprocess", "data", "engine", "losses", "metrics", "runtime", "evaluation",
                                        "export", "inference", "foundation", "suggest"}

ALLOWED = {
    "errors": set(),
    "atomic": set(),
    "lazy": set(),
    "processes": set(),
    "log": set(),
    "progress": {"atomic"},
    "config": {"errors", "atomic"},
    "preprocess": {"errors"},
    "data": FOUNDATION | {"preprocess"},
    "engine": FOUNDATION,
    "losses": FOUNDATION,  # the one supervised loss of teacher and students
    "metrics": FOUNDATION,  # the one segmentation Dice: every stage's validation, the evaluation
    "teacher": FOUNDATION | {"engine", "preprocess", "data", "losses", "metrics"},
    "synthesis": FOUNDATION | {"engine", "preprocess", "data"},
    "student": FOUNDATION | {"engine", "preprocess", "data", "losses", "metrics"},
    "runtime": {"errors", "preprocess"},  # shipped into Slicer: numpy + onnxruntime only
    "evaluation": FOUNDATION | {"preprocess", "data", "metrics"},
    "export": FOUNDATION | MODELS | {"preprocess", "data", "losses", "runtime"},
    # segment-box resolves foundation weights names (litemedsam) through the foundation cache
    "inference": FOUNDATION | MODELS | {"preprocess", "data", "engine", "losses", "runtime", "export", "foundation"},
    # foundation weights (catalog, cache, download, import): the teacher's loader checks imports
    "foundation": FOUNDATION | {"teacher"},
    # what to label next: the run's student (and teacher) through the inference layer's loaders
    "suggest": FOUNDATION | {"preprocess", "data", "runtime", "inference", "teacher"},
    # the whole run's settings: the stages' configs (none of which imports torch) put together; the
    # export section names the runtime's post-processing methods (numpy only)
    "runconfig": FOUNDATION | {"data", "engine", "teacher", "synthesis", "student", "foundation", "runtime"},
    "pipeline": BELOW_PIPELINE | {"runconfig"},
    # runs the pipeline in worker processes, never imports it; checks a job's settings with runconfig
    "service": BELOW_PIPELINE | {"runconfig"},
    "cli": BELOW_PIPELINE | {"runconfig", "pipeline", "service"},
    "__main__": {"cli"},
}


def _package_of(path: Path) -> str:
    parts = path.relative_to(ROOT).parts
    return parts[0][:-3] if len(parts) == 1 else parts[0]


def _is_module(dotted: str) -> bool:
    """True when ``tskd.a.b`` is a module or package of the source tree."""
    relative = Path(*dotted.split(".")[1:])
    return (ROOT / relative).with_suffix(".py").is_file() or (ROOT / relative / "__init__.py").is_file()


def _imported_modules(path: Path) -> set[str]:
    """The dotted names of the ``tskd`` modules the file at ``path`` imports (relative ones resolved;
    ``from tskd.a import b`` names ``tskd.a.b`` when ``b`` is a module, else ``tskd.a``)."""
    found = set()
    module_parts = list(path.relative_to(ROOT).with_suffix("").parts)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module_parts[: len(module_parts) - node.level]
                module = ".".join(["tskd", *base, *(node.module.split(".") if node.module else [])])
            else:
                module = node.module or ""
            names = [f"{module}.{alias.name}" if _is_module(f"{module}.{alias.name}") else module
                     for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.startswith("tskd.")}
    return found


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _import_cycles() -> list[list[str]]:
    """The groups of ``tskd`` modules that import each other, directly or round a circle (Tarjan's
    strongly connected components of the import graph, imports inside functions included)."""
    graph = {_module_name(path): _imported_modules(path) for path in sorted(ROOT.rglob("*.py"))}
    graph = {module: {target for target in targets if target in graph and target != module}
             for module, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for module in graph:
        if module not in index:
            visit(module)
    return cycles


def _imported_packages(path: Path) -> set[str]:
    return {name.split(".")[1] for name in _imported_modules(path)}


def _imported_pipeline_modules(path: Path) -> set[str]:
    """The ``tskd.pipeline`` modules (e.g. ``stage``) that the file at ``path`` imports."""
    return {name.split(".")[2] for name in _imported_modules(path) if name.startswith("tskd.pipeline.")}


def test_every_package_imports_only_from_below():
    problems = []
    for path in sorted(ROOT.rglob("*.py")):
        package = _package_of(path)
        if package == "__init__":
            continue
        assert package in ALLOWED, f"{path}: package '{package}' has no place in the layer table of this test"
        for target in _imported_packages(path) - {package}:
            if target not in ALLOWED[package]:
                problems.append(f"{path.relative_to(ROOT)} imports tskd.{target}")
    assert problems == []


def test_no_module_imports_itself_round_a_circle():
    """Each concept sits on one floor: no two tskd modules import each other, directly or through
    others (data/image <-> data/readers, data/prepared <-> data/slice_dataset and runtime/archive
    <-> runtime/package did, issue 34)."""
    assert _import_cycles() == []


def test_the_cycle_finder_finds_a_circle(tmp_path, monkeypatch):
    package = tmp_path / "tskd"
    (package / "p").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "p" / "__init__.py").write_text("")
    (package / "p" / "a.py").write_text("from tskd.p import b\n")
    (package / "p" / "b.py").write_text("def f():\n    from .c import x\n")
    (package / "p" / "c.py").write_text("import tskd.p.a\n")
    (package / "p" / "d.py").write_text("from tskd.p.a import y\n")
    monkeypatch.setitem(globals(), "ROOT", package)
    assert _import_cycles() == [["tskd.p.a", "tskd.p.b", "tskd.p.c"]]


def test_every_module_imports():
    """Each module of the package imports (a name moved to another module fails here, not in use)."""
    import importlib
    import pkgutil

    failures = []
    for info in pkgutil.walk_packages(tskd.__path__, "tskd."):
        if info.name.endswith("__main__"):
            continue
        try:
            importlib.import_module(info.name)
        except Exception as exc:  # noqa: BLE001 - collect every failure with its module
            failures.append(f"{info.name}: {type(exc).__name__}: {exc}")
    assert not failures, "\n".join(failures)


def test_the_run_config_imports_no_model_code():
    """The service checks a job's settings with tskd.runconfig; that must not load torch or MONAI
    into the server process (seconds of start-up and hundreds of MB per server)."""
    import subprocess
    import sys

    code = ("import sys, tskd.runconfig as r; from tskd.config import available_presets; "
            "[r.PipelineConfig.from_dict(r.load_preset(p)) for p in available_presets()]; "
            "print(sorted(m for m in ('torch', 'monai', 'SimpleITK', 'transformers', 'numpy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"


def test_every_name_a_package_file_exports_resolves():
    import importlib

    for package in ("tskd.engine", "tskd.teacher", "tskd.student", "tskd.synthesis"):
        module = importlib.import_module(package)
        assert module.__all__, package
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{package}.{name}"
        assert set(module.__all__) <= set(dir(module))


def test_the_stage_helper_sits_below_every_stage():
    """tskd.pipeline.stage is the one stage helper (docs/architecture.md): it knows the run folder
    and nothing of the stages, and every training stage trains through it, not a Trainer of its own."""
    pipeline = ROOT / "pipeline"
    assert _imported_pipeline_modules(pipeline / "stage.py") <= {"run_folder"}
    training = ["teacher_stage.py", "synthesis_stage.py", "student_stage.py",
                "comparison/methods/task_agnostic_kd.py"]
    for name in training:
        source = (pipeline / name).read_text(encoding="utf-8")
        assert "stage" in _imported_pipeline_modules(pipeline / name), name
        assert "Trainer(" not in source, f"{name} builds its own Trainer instead of using fit_stage"
    others = [p for p in pipeline.rglob("*.py") if p.name != "stage.py"]
    defined = [p for p in others if "def fit_stage" in p.read_text(encoding="utf-8")
               or "class StageContext" in p.read_text(encoding="utf-8")]
    assert defined == []
