"""Speed of ``tskd suggest``'s scoring: one 256 x 256 x 128 volume with the student on the CPU.

For each student input size (default 128, the ``cpu-small`` preset's, and 256), an untrained
``unet_small`` (speed does not depend on the weights) is exported as a real student package and
run on onnxruntime, as ``tskd suggest`` runs it. Timed per volume: plain segmentation
(:func:`tskd.runtime.segment_volume`, for reference), the suggestion scores
(:func:`tskd.suggest.score_volume`, student entropy only: the teacher part runs in the backend),
and the greedy pick (:func:`tskd.suggest.select`) on the volume's slices. ``--teacher`` adds the
disagreement term with a small scratch teacher (``tiny``, torch) to see what it costs.

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/suggest_speed.py [--size 256] [--slices 128]
        [--input-sizes 128 256] [--threads 2] [--repeats 3] [--teacher] [--out FILE]

A quick check that it works: ``--size 64 --slices 16 --input-sizes 32 --repeats 1``. Writes
``TSKDBackend/benchmarks/results/suggest_speed.json`` (machine information included) and prints a
table. Not run by ``run_all.py`` (which runs ``bench_*.py``). Run on a quiet machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from benchlib import machine_info, machine_line, now, timed, write_results

from tskd.data.labels import LabelTable
from tskd.export import write_student_package
from tskd.inference.torch_model import TorchSliceModel
from tskd.preprocess import NormalizationSpec
from tskd.runtime import OnnxSegmenter, segment_volume
from tskd.student import build_student
from tskd.suggest import SliceCandidate, SuggestConfig, score_volume, select
from tskd.teacher import build_scratch_segmenter

RESULTS = Path(__file__).resolve().parent / "results" / "suggest_speed.json"
STUDENT = "unet_small"
CLASSES = 3


def make_volume(size: int, slices: int) -> np.ndarray:
    """An int16 CT-like volume ``(slices, size, size)`` with smooth structures and noise."""
    rng = np.random.default_rng(0)
    k, j, i = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in (slices, size, size)), indexing="ij")
    volume = 500 * np.sin(3 * i + 2 * j) + 300 * (k * k + j * j < 0.4) + rng.normal(0, 30, k.shape)
    return volume.astype(np.int16)


def bench_input_size(input_size: int, volume: np.ndarray, *, threads: int, repeats: int, teacher: bool,
                     workdir: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    model = build_student(STUDENT, num_classes=CLASSES, input_size=input_size).eval()
    normalization = NormalizationSpec(mode="percentile")
    folder = write_student_package(workdir / f"s{input_size}", student=model, labels=LabelTable.default(range(CLASSES)),
                                   input_size=input_size, slice_axis=0, normalization=normalization,
                                   teacher_info=None, metrics=None)
    student = OnnxSegmenter(folder, threads=threads)
    config = SuggestConfig()
    result: dict[str, Any] = {"student": STUDENT, "input_size": input_size, "backend": "onnxruntime",
                              "volume_shape": list(volume.shape)}
    result["segment"] = timed(lambda: segment_volume(student, volume), repeats)
    result["score"] = timed(lambda: score_volume(student, volume, config=config), repeats)
    scores = score_volume(student, volume, config=config)
    candidates = [SliceCandidate("volume", i, float(s), float(e)) for i, (s, e) in
                  enumerate(zip(scores.score, scores.entropy))]
    result["select"] = timed(lambda: select(candidates, config), max(repeats, 3))
    if teacher:
        torch.manual_seed(1)
        network = build_scratch_segmenter("tiny", input_size=input_size, num_classes=CLASSES).eval()
        teacher_model = TorchSliceModel(network, input_size=input_size, label_values=list(range(CLASSES)),
                                        normalization=normalization, slice_axis=0)
        result["score_with_teacher"] = timed(
            lambda: score_volume(student, volume, teacher=teacher_model, config=config), repeats)
    return result


def format_table(results: dict[str, Any]) -> str:
    lines = [machine_line(results), "",
             f"{'student':<11} {'input':>5}  {'volume':<13} {'segment s':>9}  {'score s':>7}  {'slices/s':>8}  "
             f"{'select ms':>9}  {'+teacher s':>10}"]
    for run in results["runs"]:
        shape = "x".join(str(n) for n in run["volume_shape"][::-1])
        score = run["score"]["median_s"]
        with_teacher = f"{run['score_with_teacher']['median_s']:10.2f}" if "score_with_teacher" in run else f"{'-':>10}"
        lines.append(f"{run['student']:<11} {run['input_size']:>5}  {shape:<13} {run['segment']['median_s']:9.2f}  "
                     f"{score:7.2f}  {run['volume_shape'][0] / score:8.1f}  {1000 * run['select']['median_s']:9.2f}  "
                     f"{with_teacher}")
    lines.append("")
    lines.append("medians of --repeats timed calls after one warm-up; score = the student's entropy per slice "
                 "(tskd suggest without a teacher); volume in (i, j, k) order")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=256, help="in-plane voxels of the volume (default 256)")
    parser.add_argument("--slices", type=int, default=128, help="slices of the volume (default 128)")
    parser.add_argument("--input-sizes", type=int, nargs="+", default=[128, 256], metavar="S",
                        help="student input sizes to time (multiples of 16; default 128 256)")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads for onnxruntime and torch (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement (default 3)")
    parser.add_argument("--teacher", action="store_true", help="also time the disagreement with a tiny scratch teacher")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file (default {RESULTS})")
    args = parser.parse_args(argv)
    if min(args.size, args.slices, args.threads, args.repeats) < 1 or any(s < 16 or s % 16 for s in args.input_sizes):
        parser.error("--size, --slices, --threads and --repeats must be positive; --input-sizes multiples of 16")
    torch.set_num_threads(args.threads)
    volume = make_volume(args.size, args.slices)
    results: dict[str, Any] = {"benchmark": "suggest_speed", "created": now(), "machine": machine_info(args.threads),
                               "quick": False, "smoke": False, "runs": []}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for input_size in args.input_sizes:
            results["runs"].append(bench_input_size(input_size, volume, threads=args.threads, repeats=args.repeats,
                                                    teacher=args.teacher, workdir=Path(tmp)))
    results["seconds"] = time.perf_counter() - start
    print(format_table(results))
    out = write_results(results, args.out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
