"""The benchmark scripts still run: teacher and diffusion in ``--smoke`` mode, and run_all's discovery.

The two scripts run at the same time in subprocesses (their cost is mostly importing torch and
friends); the test checks the JSON they write, never the timings' values beyond being positive.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SRC = BENCHMARKS.parent / "src"


def _start(script: str, out: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))
    return subprocess.Popen([sys.executable, str(BENCHMARKS / script), "--smoke", "--threads", "1", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def _finish(process: subprocess.Popen, out: Path) -> dict:
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output
    assert f"wrote {out}" in output
    return json.loads(out.read_text(encoding="utf-8"))


def _check_machine(machine: dict) -> None:
    for key in ("cpu", "logical_cores", "physical_cores", "ram_gib", "torch", "onnxruntime", "gpus"):
        assert key in machine
    assert machine["physical_cores"] >= 1 and machine["ram_gib"] > 0 and machine["threads"] == 1


def test_teacher_and_diffusion_smoke(tmp_path: Path) -> None:
    teacher_out, diffusion_out = tmp_path / "teacher.json", tmp_path / "diffusion.json"
    teacher, diffusion = _start("bench_teacher.py", teacher_out), _start("bench_diffusion.py", diffusion_out)
    try:
        diffusion_results = _finish(diffusion, diffusion_out)
        teacher_results = _finish(teacher, teacher_out)
    finally:
        for process in (teacher, diffusion):
            if process.poll() is None:
                process.kill()

    assert teacher_results["benchmark"] == "teacher" and teacher_results["smoke"] is True
    _check_machine(teacher_results["machine"])
    runs = {(r["kind"], r["device"]): r for r in teacher_results["runs"]}
    train, infer = runs[("train", "cpu")], runs[("infer", "cpu")]
    assert "error" not in train and "error" not in infer, (train, infer)
    assert train["architecture"] == "tiny" and train["input_size"] == 64 and train["batch"] == 2
    assert train["timed_steps"] == 1 and len(train["step_times_s"]) == 1
    assert train["seconds_per_step"] > 0 and train["images_per_s"] > 0 and train["peak_rss_mib"] > 100
    assert infer["seconds_per_image"] > 0 and infer["peak_rss_mib"] > 100
    lora = train["parameters"]
    assert 0 < lora["encoder_trainable"] < lora["encoder_total"] and 0 < lora["trainable"] < lora["total"]
    assert lora["has_foundation_weights"] == 1.0
    counts = teacher_results["parameters"]
    assert {p["architecture"] for p in counts.values()} == {"vit_b", "vit_l", "vit_h"}
    vit_b, vit_h = counts["vit_b_1024"], counts["vit_h_1024"]
    # LoRA rank 4 on qkv: 12 blocks x (768 x 4 + 4 x 2304) weights in ViT-B's encoder
    assert vit_b["encoder_trainable"] == 12 * (768 * 4 + 4 * 3 * 768)
    assert 0 < vit_h["encoder_trainable_percent"] < vit_b["encoder_trainable_percent"] < 1

    assert diffusion_results["benchmark"] == "diffusion" and diffusion_results["smoke"] is True
    _check_machine(diffusion_results["machine"])
    (run,) = diffusion_results["runs"]
    assert run["device"] == "cpu" and run["image_size"] == 32 and run["parameters"] > 0
    assert run["train"]["images_per_s"] > 0 and run["train"]["seconds_per_step"] > 0
    assert run["train"]["timed_steps"] == 1
    sample = run["sample"]
    assert sample["images_per_s"] > 0 and sample["steps"] == sample["measured_steps"] == 10
    assert sample["extrapolated"] is False and sample["batch"] == 2


def _run_all():
    spec = importlib.util.spec_from_file_location("run_all", BENCHMARKS / "run_all.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_all_discovers_the_scripts() -> None:
    run_all = _run_all()
    scripts = run_all.discover()
    names = list(scripts)
    for name in ("inference", "teacher", "diffusion", "service"):
        assert name in names
    assert names.index("inference") < names.index("teacher") < names.index("diffusion") < names.index("service")
    assert "benchlib" not in " ".join(p.name for p in scripts.values())
    assert all(run_all.accepts_quick(path) for name, path in scripts.items() if name in ("teacher", "diffusion"))


def test_run_all_passes_quick_and_reports_the_json(tmp_path: Path) -> None:
    run_all = _run_all()
    script = tmp_path / "bench_echo.py"
    out = tmp_path / "echo.json"
    script.write_text(
        "import argparse, json, sys\n"
        "parser = argparse.ArgumentParser()\n"
        "parser.add_argument('--quick', action='store_true')\n"
        "args = parser.parse_args()\n"
        f"open({str(out)!r}, 'w').write(json.dumps({{'quick': args.quick}}))\n"
        f"print('wrote {out}')\n"
    , encoding="utf-8")
    assert run_all.discover(tmp_path) == {"echo": script}
    result = run_all.run_script(script, quick=True)
    assert result["returncode"] == 0 and result["json"] == [str(out)]
    assert json.loads(out.read_text(encoding="utf-8")) == {"quick": True}

    plain = tmp_path / "bench_plain.py"  # no --quick: run without it rather than fail
    plain.write_text("import sys\nsys.exit(3 if len(sys.argv) > 1 else 0)\n", encoding="utf-8")
    assert not run_all.accepts_quick(plain)
    assert run_all.run_script(plain, quick=True)["returncode"] == 0
