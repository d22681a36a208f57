"""Test fixture worker: a small program that keeps the ``tskd train`` contract, fast and controllable.

    python fake_train.py --data DIR --out RUN --preset P [--config FILE] [--cancel-file F] [--base B]

It writes ``RUN/status.json`` with :class:`tskd.progress.StatusFileProgress` (the real format),
checkpoints its step to ``RUN/checkpoint.json`` and resumes from it, stops with exit code 130 when
the cancel file appears, and at the end writes a real student package (``RUN/package/model.onnx``:
a 1x1 "threshold" network whose logits are ``[-x, x]``, so it labels 1 where the normalised
intensity is positive; plus ``tskd-model.json``). The ``fake`` section of the config file controls it:

    fake: {steps: 10, step_s: 0.05, exit: 0, ignore_cancel: false, spawn_child: false, size: 32,
           error: null, comparison: null, start_s: 0}

With ``update: {from_run: RUN}`` in the config (a service job with ``update_from``) it writes
``RUN/lineage.json`` from the labels the previous run saw (``RUN/seen.json``), as ``tskd train``
does.

``start_s`` is a pause before the first step (the real pipeline's start-up: loading, preparing).

``comparison`` (a dict like ``tskd train``'s) goes into the package's metadata with ``kind``.

``preset: bad`` (or ``fake.error``) prints ``tskd: error: ...`` and exits 2, as the CLI does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tskd.progress import ProgressEvent, StatusFileProgress


def write_package(folder: Path, size: int, comparison: dict | None = None) -> None:
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, size, size])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2, size, size])
    graph = helper.make_graph(
        [helper.make_node("Neg", ["image"], ["negative"]),
         helper.make_node("Concat", ["negative", "image"], ["logits"], axis=1)],
        "threshold", [image], [logits],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    metadata = {
        "format": "tskd-student",
        "format_version": 1,
        "tskd_version": "test",
        "created": "2025-01-01T00:00:00Z",
        "labels": [{"value": 0, "name": "background", "color": [0, 0, 0]},
                   {"value": 1, "name": "organ_a", "color": [0.85, 0.4, 0.31]}],
        "input": {"size": size, "slice_axis": 0,
                  "normalization": {"mode": "percentile", "p_low": 0.5, "p_high": 99.5}},
        "student": {"architecture": "threshold", "parameters": 0},
        "teacher": {"architecture": None, "base": None, "base_sha256": None, "has_foundation_weights": False},
        "metrics": {"val_dice": 0.5},
        "onnx": {"opset": 17, "input_name": "image", "output_name": "logits", "argmax_agreement": 1.0},
    }
    if comparison:  # as tskd train records its choice between the distilled and the labels-only student
        metadata["kind"] = comparison["chosen"]
        metadata["comparison"] = comparison
    (folder / "tskd-model.json").write_text(json.dumps(metadata, indent=1), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--config", type=Path)
    parser.add_argument("--cancel-file", type=Path)
    parser.add_argument("--base")
    args = parser.parse_args()
    full = (yaml.safe_load(args.config.read_text(encoding="utf-8")) or {}) if args.config else {}
    cfg = full.get("fake", {})
    if args.preset == "bad" or cfg.get("error"):
        print(f"tskd: error: {cfg.get('error') or 'preset bad: refused'}", file=sys.stderr, flush=True)
        return 2
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    images = sorted(p.name for p in (args.data / "images").iterdir())
    labels = sorted(p.name for p in (args.data / "labels").iterdir())
    (out / "seen.json").write_text(json.dumps({"images": images, "labels": labels, "preset": args.preset,
                                               "base": args.base, "pid": os.getpid()}), encoding="utf-8")
    steps, step_s = int(cfg.get("steps", 10)), float(cfg.get("step_s", 0.05))
    if cfg.get("spawn_child"):
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        (out / "child.pid").write_text(str(child.pid), encoding="utf-8")
    checkpoint = out / "checkpoint.json"
    start = json.loads(checkpoint.read_text(encoding="utf-8"))["step"] if checkpoint.exists() else 0
    print(f"fake training: {len(images)} images, starting at step {start}", flush=True)
    progress = StatusFileProgress(out / "status.json", min_interval_s=0.0)
    time.sleep(float(cfg.get("start_s", 0)))
    for step in range(start, steps):
        if args.cancel_file is not None and args.cancel_file.exists() and not cfg.get("ignore_cancel"):
            progress(ProgressEvent("fake", step, steps, message="cancelled; checkpoint kept", state="cancelled"))
            print(f"cancelled at step {step}", flush=True)
            return 130
        time.sleep(step_s)
        # atomically, as the real trainer keeps its checkpoints: a SIGKILL mid-write (the restart tests kill
        # this process at any moment) must leave the previous step's file, never an empty one
        partial = checkpoint.with_suffix(".part")
        partial.write_text(json.dumps({"step": step + 1}), encoding="utf-8")
        os.replace(partial, checkpoint)
        progress(ProgressEvent("fake", step + 1, steps, metrics={"loss": 1.0 / (step + 1)}))
        print(f"step {step + 1}/{steps}", flush=True)
    gate = cfg.get("hold_until")  # a test's gate: the job stays running until the test creates this file
    deadline = time.monotonic() + 300
    while gate and not Path(gate).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    previous = (full.get("update") or {}).get("from_run")
    if previous:  # as tskd train --update-from records it: the previous run's labels vs these
        before = json.loads((Path(previous) / "seen.json").read_text(encoding="utf-8"))["labels"]
        added, removed = sorted(set(labels) - set(before)), sorted(set(before) - set(labels))
        (out / "lineage.json").write_text(json.dumps({
            "updated_from": previous, "added_cases": [n.split(".")[0] for n in added],
            "removed_cases": [n.split(".")[0] for n in removed], "labelled_before": len(before),
            "labelled_now": len(labels)}), encoding="utf-8")
    write_package(out / "package", int(cfg.get("size", 32)), cfg.get("comparison"))
    progress(ProgressEvent("fake", steps, steps, message="finished", state="done", metrics={"val_dice": 0.5}))
    print("done", flush=True)
    return int(cfg.get("exit", 0))


if __name__ == "__main__":
    sys.exit(main())
