"""Inference speed: students (torch and onnxruntime) against the SAM ViT-B teacher, on the CPU.

For the students ``unet_small`` and ``vit_tiny`` (untrained weights: speed does not depend on
them): milliseconds per 256 x 256 slice at batch 1 and batch 16, and seconds for a
256 x 256 x 128 volume through :func:`tskd.runtime.segment_volume`, with torch and with
onnxruntime (the model exported as a real student package). For the teacher, SAM ViT-B with
random weights (``build_sam("vit_b")``): torch milliseconds per slice at input 256 and 1024.
Ratios teacher / student per slice close the table.

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_inference.py [--quick] [--threads N]

Writes ``TSKDBackend/benchmarks/results/inference.json`` (machine information included) and
prints a table. Run it on a quiet machine: other processes distort every number.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import machine_info, timed
import torch

from tskd.data.labels import LabelTable
from tskd.export import write_student_package
from tskd.inference.torch_model import TorchSliceModel
from tskd.preprocess import NormalizationSpec
from tskd.runtime import OnnxSegmenter, physical_cores, segment_volume
from tskd.student import build_student, count_parameters
from tskd.teacher import build_scratch_segmenter

RESULTS = Path(__file__).resolve().parent / "results" / "inference.json"
STUDENTS = ("unet_small", "vit_tiny")
SIZE = 256
VOLUME_SHAPE = (128, SIZE, SIZE)  # numpy (k, j, i): 128 slices of 256 x 256
CLASSES = 3


def gflops(model: torch.nn.Module, input_size: int) -> float:
    """Floating-point operations of one forward pass on one slice, in GFLOP (torch's counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, input_size, input_size))
    return counter.get_total_flops() / 1e9


def bench_volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in VOLUME_SHAPE), indexing="ij")
    volume = 500 * np.sin(3 * i + 2 * j) + 300 * (k * k + j * j < 0.4) + rng.normal(0, 30, VOLUME_SHAPE)
    return volume.astype(np.int16)


def bench_student(name: str, threads: int, repeats: int, workdir: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_student(name, num_classes=CLASSES, input_size=SIZE).eval()
    labels = LabelTable.default(range(CLASSES))
    normalization = NormalizationSpec(mode="percentile")
    folder = write_student_package(workdir / name, student=model, labels=labels, input_size=SIZE, slice_axis=0,
                                   normalization=normalization, teacher_info=None, metrics=None)
    onnx = OnnxSegmenter(folder, threads=threads)
    torch_model = TorchSliceModel(model, input_size=SIZE, label_values=list(range(CLASSES)),
                                  normalization=normalization, slice_axis=0)
    result: dict[str, Any] = {"parameters": count_parameters(model), "gflops_per_slice": gflops(model, SIZE)}
    rng = np.random.default_rng(1)
    for batch in (1, 16):
        x = rng.standard_normal((batch, 1, SIZE, SIZE)).astype(np.float32)
        for backend, runner in (("torch", torch_model), ("onnxruntime", onnx)):
            timing = timed(lambda: runner.logits(x), repeats if batch == 1 else max(1, repeats // 4))
            result[f"{backend}_ms_per_slice_batch{batch}"] = 1000 * timing["median_s"] / batch
    volume = bench_volume()
    for backend, runner in (("torch", torch_model), ("onnxruntime", onnx)):
        timing = timed(lambda: segment_volume(runner, volume, batch_size=16), 1 if repeats < 5 else 2, warmup=0)
        result[f"{backend}_volume_s"] = timing["median_s"]
    return result


def bench_teacher(input_size: int, repeats: int, warmup: int) -> dict[str, Any]:
    torch.manual_seed(0)
    teacher = build_scratch_segmenter("vit_b", input_size=input_size, num_classes=CLASSES).eval()
    x = torch.randn(1, 1, input_size, input_size)

    def run() -> None:
        with torch.no_grad():
            teacher(x)

    timing = timed(run, repeats, warmup)
    return {"input_size": input_size, "parameters": count_parameters(teacher),
            "gflops_per_slice": gflops(teacher, input_size), "torch_ms_per_slice": 1000 * timing["median_s"],
            "repeats": repeats, "warmup": warmup}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (numbers are rougher)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch and onnxruntime "
                        "(default: physical cores)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file to write (default: {RESULTS})")
    parser.add_argument("--skip-teacher-1024", action="store_true", help="leave out the (slow) 1024-pixel teacher")
    args = parser.parse_args(argv)
    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    repeats = 3 if args.quick else 10
    results: dict[str, Any] = {"machine": machine_info(threads), "quick": args.quick,
                               "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "students": {}, "teacher": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in STUDENTS:
            print(f"student {name}...", file=sys.stderr, flush=True)
            results["students"][name] = bench_student(name, threads, repeats, Path(tmp))
    print("teacher vit_b at 256...", file=sys.stderr, flush=True)
    results["teacher"]["vit_b_256"] = bench_teacher(256, 2 if args.quick else 5, 1)
    if not args.skip_teacher_1024:
        print("teacher vit_b at 1024 (slow on a CPU)...", file=sys.stderr, flush=True)
        results["teacher"]["vit_b_1024"] = bench_teacher(1024, 1 if args.quick else 3, 0 if args.quick else 1)
    for backend in ("torch", "onnxruntime"):
        ratios = {}
        for name, student in results["students"].items():
            for key, teacher in results["teacher"].items():
                ratios[f"{key}/{name}"] = teacher["torch_ms_per_slice"] / student[f"{backend}_ms_per_slice_batch1"]
        results[f"ratio_teacher_torch_over_student_{backend}_batch1"] = ratios
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(format_table(results))
    print(f"wrote {args.out}")
    return 0


def format_table(results: dict[str, Any]) -> str:
    machine = results["machine"]
    lines = [f"{machine['cpu']} ({machine['physical_cores']} physical cores, {machine['threads']} threads); "
             f"torch {machine['torch']}, onnxruntime {machine['onnxruntime']}{' [quick]' if results['quick'] else ''}",
             "",
             f"{'model':<12} {'params':>11} {'GFLOP':>7} {'backend':<12} {'ms/slice b1':>12} {'ms/slice b16':>13} "
             f"{'256x256x128 s':>14}"]
    for name, r in results["students"].items():
        for backend in ("torch", "onnxruntime"):
            lines.append(f"{name:<12} {r['parameters']:>11,} {r['gflops_per_slice']:>7.1f} {backend:<12} "
                         f"{r[f'{backend}_ms_per_slice_batch1']:>12.1f} {r[f'{backend}_ms_per_slice_batch16']:>13.1f} "
                         f"{r[f'{backend}_volume_s']:>14.2f}")
    for key, t in results["teacher"].items():
        lines.append(f"{key:<12} {t['parameters']:>11,} {t['gflops_per_slice']:>7.1f} {'torch':<12} "
                     f"{t['torch_ms_per_slice']:>12.1f}")
    lines.append("")
    lines.append(f"{'teacher (torch) / student per slice, batch 1':<44} {'torch':>8} {'onnxruntime':>12}")
    by_torch = results["ratio_teacher_torch_over_student_torch_batch1"]
    by_onnx = results["ratio_teacher_torch_over_student_onnxruntime_batch1"]
    for key in by_torch:
        lines.append(f"{key:<44} {by_torch[key]:7.1f}x {by_onnx[key]:11.1f}x")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
