"""tskd.runtime inside Slicer: importable from the shipped sources, light (no torch, SimpleITK...), and
onnxruntime looked for without being imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import MODULE_DIR, REPO_ROOT
from SlicerTSKDLib.install.runtimeSetup import RUNTIME_MODULES, installOnnxruntime, onnxruntimeAvailable, runtimeSourceFolder

HEAVY = ("torch", "SimpleITK", "monai", "fastapi", "uvicorn", "yaml", "scipy", "onnx", "onnxruntime", "PIL",
         "transformers", "diffusers", "accelerate", "sqlite3", "tskd.data", "tskd.service", "tskd.engine")


def runClean(code: str) -> str:
    """Run ``code`` in a fresh interpreter that only has the module folder on its path (like Slicer)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run([sys.executable, "-c", code], cwd=str(REPO_ROOT / "Testing"), env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_runtime_comes_from_the_shipped_sources_and_pulls_in_nothing_heavy():
    assert runtimeSourceFolder(str(MODULE_DIR)) == str(REPO_ROOT / "TSKDBackend" / "src")
    code = (
        "import sys, json; sys.path.insert(0, {module!r}); sys.modules.pop('tskd', None)\n"
        "before = set(sys.modules)\n"
        "from SlicerTSKDLib.install.runtimeSetup import ensureRuntimeImportable\n"
        "folder = ensureRuntimeImportable({module!r})\n"
        "import tskd.runtime\n"
        "print(json.dumps({{'folder': folder, 'file': tskd.runtime.__file__, 'new': sorted(set(sys.modules) - before)}}))\n"
    ).format(module=str(MODULE_DIR))
    answer = json.loads(runClean(code).strip().splitlines()[-1])
    assert answer["folder"] == str(REPO_ROOT / "TSKDBackend" / "src")
    assert answer["file"].startswith(answer["folder"])
    loaded = set(answer["new"])
    assert set(RUNTIME_MODULES) <= loaded
    heavy = sorted(name for name in loaded if any(name == h or name.startswith(h + ".") for h in HEAVY))
    assert heavy == [], "importing the runtime pulled in {}".format(heavy)
    assert {name.split(".")[0] for name in loaded if "." not in name} - {"tskd", "SlicerTSKDLib", "numpy"} <= \
        set(sys.stdlib_module_names) | {"_distutils_hack"}


def test_onnxruntime_is_found_without_being_imported():
    code = ("import sys; sys.path.insert(0, {!r})\n"
            "from SlicerTSKDLib.install.runtimeSetup import onnxruntimeAvailable\n"
            "print(onnxruntimeAvailable(), 'onnxruntime' in sys.modules)").format(str(MODULE_DIR))
    assert runClean(code).split() == ["True", "False"]
    assert onnxruntimeAvailable()


def test_install_failure_means_segmenting_on_the_backend():
    calls = []

    def offline(requirement):
        calls.append(requirement)
        raise OSError("pip: no network")

    assert installOnnxruntime(offline) is False and calls == ["onnxruntime"]
    assert installOnnxruntime(lambda requirement: None) is True  # already installed here: it imports
