"""The prepared GPU check: what the project does on one GPU, measured in one run of at most 8 minutes.

Sections, each in its own process with its own time cap inside one total budget (a section that
fails, runs out of GPU memory or hangs records its error and the others still run). On Linux each
section's process is forked from this one after it imported what the sections need (torch, the
pipeline, onnxruntime: :data:`PRELOAD`), instead of starting an interpreter that imports them again;
CUDA is never initialised here, so each section still starts it on its own (where an import did
initialise it, or there is no ``fork``, the sections get fresh interpreters as before):

1. ``machine``   nvidia-smi (GPU, driver, memory), torch / CUDA / cuDNN versions, onnxruntime's
                 providers, and the backend's declared dependencies against what is installed;
2. ``demo``      ``tskd demo`` (device ``auto``: CUDA when torch sees one; mixed precision ``auto``:
                 bf16 on such a GPU): wall time, held-out Dice, the device and precision each
                 training stage used (from the engine's log record);
3. ``teacher``   SAM ViT-B from a file in Meta's official layout (random weights, written by the
                 tests' checkpoint writer) with the ``gpu`` preset's LoRA: seconds per training step
                 and peak GPU memory at 256 and 1024 input, batch 1 and 8, bf16 and fp32 (one process
                 each: accelerate fixes the precision per process); inference ms per image;
4. ``diffusion`` the ``gpu`` preset's U-Net at its 128 px: training and sampling images per second;
5. ``students``  ms per 256 x 256 slice (batch 1 and 16) and seconds per 256 x 256 x 128 volume,
                 torch on the device and onnxruntime;
6. ``train``     ``tskd train --preset gpu`` with ``gpu_check_train.yaml`` (stages capped by steps,
                 80 labelled HC18 images) and the official-layout ViT-B as ``--base``: steps per
                 second of every stage, stopped cleanly at its cap; from them, the full ``gpu`` and
                 ``standard`` presets' times, labelled *extrapolated*.

Usage (from the repository root; ``make gpu-check``; on the GPU machine see README.md, "GPU check")::

    python TSKDBackend/benchmarks/gpu_check.py [--device auto|cuda|cpu] [--quick] [--out FILE] [--fresh-interpreters]

``--device cpu --quick`` runs every section with tiny sizes on a CPU in a few minutes (the test
does), so the GPU minutes go to measuring. Prints a table and writes JSON after every section
(default ``TSKDBackend/benchmarks/results/gpu_check.json``), so a run cut short keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import HERE, REPO, RESULTS_DIR, SRC, now, parse_reply, worker_reply, write_results
from gpu_check_sections import stage_engines  # no torch at import

RESULTS = RESULTS_DIR / "gpu_check.json"
TRAIN_CONFIG = HERE / "gpu_check_train.yaml"
BUNDLED_HC18 = REPO / ".gpu-data" / "hc18"  # written by gpu_bundle.py, carried to the GPU machine
SHARED_HC18 = REPO.parent / "shared" / "data" / "hc18"
#: Seconds each section may take (the train section is asked to stop ``STOP_GRACE`` before its cap).
CAPS = {"machine": 20, "checkpoint": 25, "demo": 70, "teacher_bf16": 45, "teacher_fp32": 45, "diffusion": 35,
        "students": 35, "train": 180}
CAPS_QUICK = {"machine": 60, "checkpoint": 60, "demo": 180, "teacher_bf16": 120, "teacher_fp32": 120,
              "diffusion": 90, "students": 90, "train": 240}
BUDGET_S, BUDGET_QUICK_S = 460, 900
STOP_GRACE = {False: 30, True: 60}
MIN_SECTION_S = 15  # below this much budget left, a section is skipped rather than started
#: What the sections import, loaded once by this process before it forks them (see the module docstring).
PRELOAD = ("torch", "onnxruntime", "accelerate", "tskd.engine", "tskd.runconfig", "tskd.pipeline.run",
           "tskd.pipeline.demo", "tskd.teacher", "tskd.teacher.inference", "tskd.synthesis.model",
           "tskd.synthesis.sampler", "tskd.synthesis.task", "tskd.student", "tskd.export", "tskd.runtime",
           "tskd.inference.torch_model", "gpu_check_sections")


# ----------------------------------------------------------------------------------- plan
def plan(args: argparse.Namespace, workdir: Path) -> list[dict[str, Any]]:
    """The worker specs, in running order (most likely to find a CUDA-only fault first)."""
    quick = args.quick
    common = {"device": args.device, "workdir": str(workdir), "threads": args.threads}
    architecture = "tiny" if quick else "vit_b"
    checkpoint = str(workdir / f"sam_{architecture}_official.pth")
    teacher = {"architecture": architecture, "checkpoint": checkpoint,
               "sizes": [32, 64] if quick else [256, 1024], "batches": [1, 2] if quick else [1, 8],
               "train_steps": (1, 2) if quick else (2, 5), "infer_calls": (1, 2) if quick else (3, 10)}
    train: dict[str, Any] = {"preset": "tiny" if quick else "gpu", "config": str(TRAIN_CONFIG), "checkpoint": checkpoint,
                             "data": str(args.hc18), "cancel_file": str(workdir / "train.cancel")}
    #: --quick on a CPU: a 4-image synthetic set in one sampling round (the tiny preset's 32 in rounds of 16 are
    #: up to 128 samples, the demo's largest share of a CPU run)
    quick_synthesis = {"synthesis": {"num_synthetic": 4, "sample_batch_size": 4}}
    if quick:  # the caps file's numbers are for a GPU: a few steps and images on the CPU
        # ... and no task-tuned box model: no stage rate comes from it, and its tuning and ONNX export were
        # some 5 s of CPU of a tiny run (a run's box model is tested in tests/pipeline/test_litemedsam_teacher.py)
        train.update(max_steps=3, overrides={**quick_synthesis, "teacher": {"box_tuning": {"enabled": False}}})
    specs = [
        {"section": "machine"},
        {"section": "demo", "preset": "tiny", "max_steps": 3 if quick else None,
         "overrides": quick_synthesis if quick else None,
         "cases": 3 if quick else 8, "unlabelled": 1 if quick else 2, "test_cases": 1 if quick else 4},
        {"section": "checkpoint", "architecture": architecture, "checkpoint": checkpoint},
        {"section": "teacher", "key": "teacher_bf16", "precision": "bf16", "inference": True, **teacher},
        {"section": "teacher", "key": "teacher_fp32", "precision": "fp32", "inference": False, **teacher},
        {"section": "diffusion", "preset": "tiny" if quick else "gpu", "image_size": 32 if quick else 128,
         "train_batch": 2 if quick else None, "sample_batch": 2 if quick else None,
         "train_steps": (1, 2) if quick else (3, 10), "sample_repeats": 1 if quick else 2,
         "measured_steps": 2 if quick else None},
        {"section": "students", "students": ["unet_small", "vit_tiny"], "slice_size": 64 if quick else 256,
         "volume_slices": 8 if quick else 128, "repeats": 2 if quick else 10},
        {"section": "train", **train},
    ]
    return [{**common, "key": spec.get("key", spec["section"]), **spec} for spec in specs]


# ----------------------------------------------------------------------------------- running
def _worker_env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED="1",
                PYTHONPATH=os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p))


def preload() -> bool:
    """Import :data:`PRELOAD` here; True when the sections may be forked from this process (Linux, and
    CUDA not initialised by any of those imports: a forked child could not start it again)."""
    if not sys.platform.startswith("linux"):
        return False
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import torch

    return not torch.cuda.is_initialized()


def _forked_section(spec: dict[str, Any], reply_path: str) -> None:
    """A forked section's process: run it and leave its result in ``reply_path``."""
    os.dup2(2, 1)  # what a section prints goes to stderr (a fresh interpreter's stdout carried only its reply)
    os.environ.update(_worker_env())  # the processes a section starts import this checkout's tskd
    from gpu_check_sections import run_section

    Path(reply_path).write_text(json.dumps(run_section(spec)), encoding="utf-8")


class SectionProcess:
    """One section's process: forked from this one (``fork=True``) or a fresh interpreter (``--worker``)."""

    def __init__(self, spec: dict[str, Any], fork: bool) -> None:
        self.fork, self.stdout = fork, ""
        if fork:
            handle, self.reply_path = tempfile.mkstemp(prefix=f"tskd-gpu-check-{spec['key']}-", suffix=".json")
            os.close(handle)
            sys.stdout.flush()
            sys.stderr.flush()
            self.process: Any = multiprocessing.get_context("fork").Process(
                target=_forked_section, args=(spec, self.reply_path), name=f"gpu-check-{spec['key']}")
            self.process.start()
        else:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
            self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=_worker_env())

    def wait(self, timeout: float | None) -> bool:
        """Wait at most ``timeout`` seconds (None: until it ends); True when it has ended."""
        if self.fork:
            self.process.join(timeout)
            return self.process.exitcode is not None
        try:
            self.stdout, _ = self.process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        self.process.kill()
        self.wait(None)

    @property
    def returncode(self) -> int:
        """The exit status; minus the signal's number when a signal ended it."""
        return self.process.exitcode if self.fork else self.process.returncode

    def reply(self) -> dict[str, Any] | None:
        """The section's result, or None when it handed none over."""
        if not self.fork:
            return parse_reply(self.stdout or "")
        path = Path(self.reply_path)
        text = path.read_text(encoding="utf-8") if path.is_file() else ""
        path.unlink(missing_ok=True)
        return json.loads(text) if text else None


def run_spec(spec: dict[str, Any], cap_s: float, stop_grace_s: float, fork: bool = False) -> dict[str, Any]:
    """Run one section in its own process (forked from this one, or a fresh interpreter), at most ``cap_s`` seconds.

    A spec with a ``cancel_file`` gets it created ``stop_grace_s`` before the cap (the pipeline
    then saves a checkpoint and stops, and the worker still reports what it measured).
    """
    start = time.monotonic()
    process = SectionProcess(spec, fork)
    soft = cap_s - stop_grace_s if spec.get("cancel_file") and cap_s > 2 * stop_grace_s else None
    note = None
    if not process.wait(soft if soft is not None else cap_s):
        if soft is not None:
            Path(spec["cancel_file"]).touch()
            note = f"asked to stop after {soft:.0f} s (its cap is {cap_s:.0f} s)"
            process.wait(cap_s - soft)
        if process.returncode is None:
            process.kill()
            note = f"killed at its cap of {cap_s:.0f} s"
    reply = process.reply()
    if reply is None:
        status = process.returncode
        reply = {"error": note or (f"killed by signal {-status}" if status < 0 else f"exit status {status} without a result")}
    elif note:
        reply["note"] = note
    reply["wall_s"] = time.monotonic() - start
    reply["cap_s"] = cap_s
    return reply


def run_all(args: argparse.Namespace, workdir: Path, results: dict[str, Any]) -> None:
    caps = CAPS_QUICK if args.quick else CAPS
    started = time.monotonic()
    fork = not args.fresh_interpreters and preload()
    results["sections_forked"], results["preload_s"] = fork, time.monotonic() - started
    for spec in plan(args, workdir):
        key = spec["key"]
        if args.only and not any(key.startswith(name) for name in args.only):
            continue
        left = args.budget - (time.monotonic() - started)
        if left < MIN_SECTION_S:
            outcome: dict[str, Any] = {"skipped": f"the time budget of {args.budget:.0f} s was spent"}
        else:
            cap = min(caps[key], left)
            print(f"=== {key} (at most {cap:.0f} s; {left:.0f} s of the budget left)", file=sys.stderr, flush=True)
            outcome = run_spec(spec, cap, STOP_GRACE[args.quick], fork)
            if "error" in outcome:
                print(f"{key}: {outcome['error']}", file=sys.stderr, flush=True)
        results["sections"][key] = outcome
        results["total_s"] = time.monotonic() - started
        write_results(results, args.out)  # after every section: a run cut short keeps what it measured


# ----------------------------------------------------------------------------------- extrapolation
def extrapolate(results: dict[str, Any], presets: tuple[str, ...] = ("gpu", "standard")) -> dict[str, Any]:
    """Expected times of the full presets from the capped run's rates (and the teacher section's step
    at the standard preset's teacher size). Every figure is an extrapolation, never a measurement."""
    from tskd.runconfig import resolve_config

    sections = results["sections"]
    train = sections.get("train", {})
    rates = train.get("stage_rates") or {}
    if "error" in train or not rates:
        return {"error": "no stage rates from the train section"}
    teacher_rows = [r for key in ("teacher_bf16",) for r in sections.get(key, {}).get("train", []) if "error" not in r]
    measured_config = resolve_config(preset=train["preset"])
    if train["preset"] not in presets:  # --quick: the tiny run's own preset too, so the path yields numbers
        presets = presets + (train["preset"],)
    out: dict[str, Any] = {"label": "extrapolated", "method": (
        "per stage: full steps x median seconds per step of the capped run + (full steps / validate_every) "
        "x the extra seconds of a validation/checkpoint interval; transfer set scaled by num_synthetic; "
        "the rest of the capped run (data, export, report) counted once as measured")}
    for name in presets:
        config = resolve_config(preset=name)
        stages, missing, total = {}, [], 0.0
        for stage, engine in stage_engines(config).items():
            rate, basis = rates.get(stage), f"the capped {train['preset']} run"
            if rate is None:
                missing.append(stage)
                continue
            step_s = rate["median_step_s"]
            if _shape(config, stage) != _shape(measured_config, stage):
                if stage == "teacher":  # the teacher section timed other sizes and batches
                    row = next((r for r in teacher_rows if (r["input_size"], r["batch"]) ==
                                (config.teacher.input_size, engine.batch_size)), None)
                    if row is None:
                        missing.append(stage)
                        continue
                    step_s = row["seconds_per_step"]
                    basis = f"the teacher section, bf16 {row['input_size']} px batch {row['batch']}"
                elif stage == "synthesis":
                    basis = (f"the capped {train['preset']} run's U-Net {_shape(measured_config, stage)}, "
                             f"not this preset's {_shape(config, stage)}: approximate")
                else:
                    missing.append(stage)
                    continue
            validations = engine.max_steps // max(1, engine.validate_every)
            seconds = engine.max_steps * step_s + validations * rate["mean_extra_s_of_slow"]
            stages[stage] = {"steps": engine.max_steps, "seconds": seconds, "basis": basis}
            total += seconds
        fixed = max(0.0, train.get("outside_training_loops_s", 0.0) - train.get("transfer_set_s", 0.0))
        capped_synthetic = train.get("capped_num_synthetic")
        transfer = None
        if train.get("transfer_set_s") is not None and capped_synthetic and config.synthesis.enabled:
            transfer = train["transfer_set_s"] * config.synthesis.num_synthetic / capped_synthetic
        out[name] = {"stages": stages, "transfer_set_s": transfer, "other_s": fixed, "missing": missing,
                     "total_s": None if missing else total + fixed + (transfer or 0.0)}
    return out


def _shape(config, stage: str) -> tuple:
    """What a stage's seconds per step depend on: its model, input size and batch."""
    if stage == "teacher":
        return (config.teacher.input_size, config.teacher.train.batch_size)
    if stage == "synthesis":
        c = config.synthesis
        return (c.image_size, tuple(c.block_out_channels), c.layers_per_block, tuple(c.attention_levels),
                c.train.batch_size)
    engine = config.finetune.train if stage == "finetune" else config.distill.train
    return (config.distill.student, config.data.prepared.input_size, engine.batch_size)


# ----------------------------------------------------------------------------------- table
def _f(value: Any, digits: int = 2) -> str:
    return "-" if value is None else (f"{value:,.{digits}f}" if isinstance(value, (int, float)) else str(value))


def format_table(results: dict[str, Any]) -> str:
    s = results["sections"]
    lines = [f"tskd GPU check, {results['created']}, device {results['device']}{' [quick]' if results['quick'] else ''}"]
    machine = s.get("machine", {})
    if "error" not in machine and machine:
        smi = machine.get("nvidia_smi", {})
        gpu = smi["gpus"][0] if smi.get("available") else {}
        lines.append(f"GPU {gpu.get('name', 'none')}, driver {gpu.get('driver_version', '-')}, "
                     f"{gpu.get('memory.total', '-')} MiB; torch {machine['torch']} (CUDA {machine['torch_cuda']}, "
                     f"cuDNN {machine['cudnn']}); unmet requirements: {', '.join(machine['requirements'].get('unmet', [])) or 'none'}")
    for key, section in s.items():
        if "error" in section or "skipped" in section:
            lines.append(f"{key:<13} {'SKIPPED: ' + section['skipped'] if 'skipped' in section else 'ERROR: ' + section['error']}")
    demo = s.get("demo", {})
    if "mean_dice" in demo:
        used = sorted({f"{v['device']}/{v['mixed_precision']}" for v in demo["training"].values()})
        lines.append(f"demo          {demo['wall_s']:.1f} s wall, held-out mean Dice {demo['mean_dice']:.3f}, "
                     f"trained on {', '.join(used)}")
    lines += ["", f"{'teacher':<9} {'input':>5} {'batch':>5} {'prec':>5} {'s/step':>8} {'img/s':>8} {'peak GPU MiB':>12}"]
    for key in ("teacher_bf16", "teacher_fp32"):
        for row in s.get(key, {}).get("train", []):
            head = f"{'':<9} {row['input_size']:>5} {row['batch']:>5} {row['precision']:>5}"
            lines.append(head + (f" error: {row['error']}" if "error" in row else
                                 f" {row['seconds_per_step']:>8.3f} {row['images_per_s']:>8.1f} {_f(row['peak_gpu_allocated_mib'], 0):>12}"))
    for row in s.get("teacher_bf16", {}).get("inference", []):
        lines.append(f"{'infer':<9} {row['input_size']:>5} {1:>5} {'fp32':>5} {row['ms_per_image']:>7.1f}ms")
    diffusion = s.get("diffusion", {})
    if "train" in diffusion:
        t, p = diffusion["train"], diffusion["sample"]
        lines += ["", f"diffusion {diffusion['preset']} U-Net {diffusion['image_size']} px: train {t['images_per_s']:.1f} img/s "
                      f"(batch {t['batch']}), sample {p['images_per_s']:.2f} img/s ({p['sampler']}, {p['steps']} steps"
                      f"{', scaled from ' + str(p['measured_steps']) if p['extrapolated'] else ''}, batch {p['batch']})"]
    students = s.get("students", {})
    if "students" in students:
        lines += ["", f"{'student':<11} {'backend':<12} {'ms/slice b1':>11} {'ms/slice b16':>12} {'volume s':>9}"]
        for name, row in students["students"].items():
            for backend in [k[: -len("_volume_s")] for k in row if k.endswith("_volume_s")]:
                lines.append(f"{name:<11} {backend:<12} {row[backend + '_ms_per_slice_batch1']:>11.2f} "
                             f"{row[backend + '_ms_per_slice_batch16']:>12.2f} {row[backend + '_volume_s']:>9.2f}")
    train = s.get("train", {})
    if "stage_rates" in train:
        lines += ["", f"train ({train['state']}, {train['wall_s']:.0f} s): " + ", ".join(
            f"{k} {_f(r['steps_per_s'], 1)} steps/s" for k, r in train["stage_rates"].items())]
    for name, entry in (results.get("extrapolated") or {}).items():
        if isinstance(entry, dict) and "stages" in entry:
            total = entry["total_s"]
            lines.append(f"extrapolated full '{name}' preset: "
                         + (f"{total / 60:.0f} min" if total is not None else f"unknown (no rate for {', '.join(entry['missing'])})"))
    lines.append(f"total {results.get('total_s', 0):.0f} s")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------- main
def check_numbers(value: Any, path: str = "") -> list[str]:
    """Paths of the numbers in ``value`` that are not finite (NaN or infinite): none in a sound run."""
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [] if math.isfinite(value) else [path]
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in check_numbers(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in check_numbers(v, f"{path}[{i}]")]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("auto", "cuda", "cpu"), default="auto",
                        help="auto: CUDA when torch sees a GPU (default)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and steps (CPU end-to-end run; tests)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file (default: {RESULTS})")
    parser.add_argument("--hc18", type=Path, default=None,
                        help=f"HC18 folder (default: {BUNDLED_HC18} when present, else {SHARED_HC18})")
    parser.add_argument("--budget", type=float, default=None,
                        help=f"total seconds for all sections (default: {BUDGET_S}; --quick: {BUDGET_QUICK_S})")
    parser.add_argument("--only", nargs="+", metavar="SECTION", help="run only these (e.g. teacher train)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch in the sections")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch folder (default: a temporary one, removed)")
    parser.add_argument("--fresh-interpreters", action="store_true",
                        help="start each section in a new Python instead of forking it from this one")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        from gpu_check_sections import run_section

        worker_reply(run_section(json.loads(args.worker)))
        return 0
    args.budget = args.budget or (BUDGET_QUICK_S if args.quick else BUDGET_S)
    args.hc18 = args.hc18 or (BUNDLED_HC18 if BUNDLED_HC18.is_dir() else SHARED_HC18)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tskd-gpu-check-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "benchmark": "gpu_check", "created": now(), "device": args.device, "quick": args.quick,
        "command": " ".join(["gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
        "budget_s": args.budget, "hc18": str(args.hc18), "sections": {},
    }
    try:
        run_all(args, workdir, results)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    train = results["sections"].get("train", {})
    if "stage_rates" in train:
        train["capped_num_synthetic"] = _capped_synthetic(args)
        try:
            results["extrapolated"] = extrapolate(results)
        except Exception as exc:  # the measurements are written either way
            results["extrapolated"] = {"error": f"{type(exc).__name__}: {exc}"}
    results["non_finite"] = check_numbers(results["sections"])
    write_results(results, args.out)
    print(format_table(results))
    print(f"wrote {args.out}")
    failed = [k for k, v in results["sections"].items() if "error" in v or "skipped" in v]
    return 1 if failed or results["non_finite"] else 0


def _capped_synthetic(args: argparse.Namespace) -> int:
    """``num_synthetic`` of the capped run (the quick run's override, else the caps file's)."""
    import yaml

    if args.quick:
        return 4
    return int(yaml.safe_load(TRAIN_CONFIG.read_text(encoding="utf-8"))["synthesis"]["num_synthetic"])


if __name__ == "__main__":
    sys.exit(main())
