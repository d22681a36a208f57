"""The GPU check runs end to end on the CPU (``--device cpu --quick``), so a GPU's minutes go to
measuring: every section present and without error, the numbers positive and finite, the device
and precision each stage trained with recorded, and the full presets extrapolated."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.slow  # about a minute on a 2-core CPU (8 sections, each in its own forked process)

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SRC = BENCHMARKS.parent / "src"
SECTIONS = ("machine", "demo", "checkpoint", "teacher_bf16", "teacher_fp32", "diffusion", "students", "train")


def make_hc18_like(root: Path, count: int = 8) -> Path:
    """HC18's layout: 8-bit grey ``images/NNN_HC.png``, RGB ``masks/`` (head ellipse 255), pixel sizes CSV."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    rows = ["filename,pixel size(mm),head circumference (mm)"]
    for index in range(count):
        yy, xx = np.mgrid[:72, :96]
        inside = ((yy - 36 - rng.uniform(-6, 6)) / 22) ** 2 + ((xx - 48 - rng.uniform(-8, 8)) / 30) ** 2 < 1
        image = np.clip(60 + 120 * inside + rng.normal(0, 25, inside.shape), 0, 255).astype(np.uint8)
        name = f"{index:03d}_HC.png"
        Image.fromarray(image).save(root / "images" / name)
        Image.fromarray(np.repeat((255 * inside).astype(np.uint8)[..., None], 3, axis=2)).save(root / "masks" / name)
        rows.append(f"{name},0.1,100")
    (root / "pixel_size_and_hc.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def run_gpu_check(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    out = tmp_path / "gpu_check.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
               TSKD_HOME=str(tmp_path / "home"))
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / "gpu_check.py"), "--device", "cpu", "--quick", "--threads", "1",
         "--hc18", str(make_hc18_like(tmp_path / "hc18")), "--out", str(out), *args],
        capture_output=True, text=True, env=env, timeout=840)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done, out


def test_gpu_check_runs_end_to_end_on_the_cpu(tmp_path: Path) -> None:
    done, out = run_gpu_check(tmp_path)
    assert f"wrote {out}" in done.stdout and "extrapolated full 'gpu' preset" in done.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    sections = results["sections"]
    assert tuple(sections) == SECTIONS
    for key, section in sections.items():
        assert "error" not in section and "skipped" not in section, (key, section)
        assert positive(section["wall_s"]) and section["wall_s"] <= section["cap_s"] + 5
    assert results["non_finite"] == [] and results["quick"] is True and results["device"] == "cpu"
    assert results["total_s"] <= results["budget_s"] + 30
    # each section in a process forked from the parent after it imported torch and the pipeline once
    assert results["sections_forked"] is (sys.platform.startswith("linux"))

    machine = sections["machine"]
    assert machine["torch"] and machine["cuda_available"] is False and "CPUExecutionProvider" in machine["onnxruntime_providers"]
    assert machine["requirements"]["unmet"] == [] and machine["requirements"]["packages"]["torch"]["ok"] is True
    assert set(machine["nvidia_smi"]) >= {"available"}

    demo = sections["demo"]
    assert 0.0 <= demo["mean_dice"] <= 1.0 and positive(demo["wall_s"]) and demo["test_cases"] == 1
    assert demo["training"] and all(v == {"device": "cpu", "mixed_precision": "no"} for v in demo["training"].values())

    assert sections["checkpoint"]["architecture"] == "tiny" and positive(sections["checkpoint"]["bytes"])
    for key, precision in (("teacher_bf16", "bf16"), ("teacher_fp32", "no")):
        rows = sections[key]["train"]
        assert {(r["input_size"], r["batch"]) for r in rows} == {(32, 1), (32, 2), (64, 1), (64, 2)}
        for row in rows:
            assert positive(row["seconds_per_step"]) and positive(row["images_per_s"]), row
            assert row["trained_as"] == {"device": "cpu", "mixed_precision": precision}
        assert 0 < sections[key]["parameters"]["encoder_trainable"] < sections[key]["parameters"]["encoder_total"]
    inference = sections["teacher_bf16"]["inference"]
    assert [r["input_size"] for r in inference] == [32, 64] and all(positive(r["ms_per_image"]) for r in inference)

    diffusion = sections["diffusion"]
    assert positive(diffusion["train"]["images_per_s"]) and positive(diffusion["sample"]["images_per_s"])
    assert diffusion["sample"]["extrapolated"] is True and diffusion["sample"]["measured_steps"] == 2

    students = sections["students"]["students"]
    assert set(students) == {"unet_small", "vit_tiny"}
    for row in students.values():
        for backend in ("torch_cpu", "onnxruntime"):
            assert positive(row[f"{backend}_ms_per_slice_batch1"]) and positive(row[f"{backend}_volume_s"])

    train = sections["train"]
    assert train["state"] == "done" and train["comparison"]["verdict"]
    assert set(train["stage_rates"]) == {"teacher", "synthesis", "distill", "finetune", "reference"}
    assert all(positive(rate["steps_per_s"]) and rate["steps"] == train["capped"][stage]
               for stage, rate in train["stage_rates"].items())
    assert all(v["device"] == "cpu" for v in train["training"].values())

    extrapolated = results["extrapolated"]
    assert extrapolated["label"] == "extrapolated"
    assert positive(extrapolated["tiny"]["total_s"]) and extrapolated["tiny"]["missing"] == []
    # the tiny run's models are not the gpu preset's: those stages are named, not guessed
    assert extrapolated["gpu"]["total_s"] is None and "teacher" in extrapolated["gpu"]["missing"]


def test_a_section_runs_in_a_fresh_interpreter_when_asked(tmp_path: Path) -> None:
    """``--fresh-interpreters``: the path taken where the sections cannot be forked (no ``fork``, or CUDA
    initialised by an import): the section's own Python hands its result over on stdout."""
    _, out = run_gpu_check(tmp_path, "--only", "machine", "--fresh-interpreters")
    results = json.loads(out.read_text(encoding="utf-8"))
    assert results["sections_forked"] is False and tuple(results["sections"]) == ("machine",)
    machine = results["sections"]["machine"]
    assert "error" not in machine and machine["cuda_available"] is False and positive(machine["section_s"])
    assert machine["tskd_from"] == str(SRC / "tskd")  # the worker imported this checkout's backend
