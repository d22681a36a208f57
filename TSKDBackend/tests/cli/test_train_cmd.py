"""``tskd train`` refuses a wrong dataset path or previous run before it imports the pipeline (whose
torch, MONAI and transformers take seconds), so the user hears about a typo at once."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROBE = """
import sys
from tskd.cli.main import main
code = main(sys.argv[1:])
print("exit", code, "pipeline imported", "tskd.pipeline.run" in sys.modules, "torch imported", "torch" in sys.modules)
"""


@pytest.mark.parametrize("extra, message", [
    ([], "{data}: not found; give a dataset folder or a manifest file"),
    (["--update-from", "{previous}"], "update.from_run: {previous} is not a folder"),
])
def test_a_wrong_path_is_refused_before_the_pipeline_is_imported(tmp_path, extra, message):
    data = tmp_path / "no-such-data" if not extra else tmp_path
    values = {"data": data, "previous": tmp_path / "no-such-run"}
    argv = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--preset", "tiny", "--base", "none"]
    argv += [a.format(**values) for a in extra]
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "exit 2 pipeline imported False torch imported False", done.stdout + done.stderr
    assert f"tskd: error: {message.format(**values)}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
