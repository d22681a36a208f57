"""Memory: segmenting a large CT with ``tskd predict``, and streaming a large transfer set.

1. **Prediction**: a 512 x 512 x 600 int16 CT (a phantom-like body with organs, bone and noise, made
   here and written as ``.nii.gz``) is segmented by the real command line,
   ``python -m tskd predict --model PACKAGE --input CT.nii.gz --output OUT/``, in a subprocess, with
   a student package holding an untrained ``unet_small`` at 256 x 256 (memory and time do not depend
   on the weights). Target: peak RSS under 4 GiB on the CPU. Both normalisations are measured: ``ct``
   (fixed window, the CT default) and ``percentile`` (per-image statistics over the whole volume).
2. **Transfer-set streaming**: a synthetic transfer set much larger than the memory the loader may
   use (default 3000 items of 256 x 256 with 4-class soft labels, about 2 GB) is read item by item
   in a subprocess the way distillation reads it (the engine's step sampler over a
   ``TransferSetDataset``, random order, one epoch). Peak RSS is compared with the size on disk; the
   anonymous part (``RssAnon``: memory that cannot be dropped) is shown apart from memory-mapped
   file pages (page cache the kernel can reclaim).

Peak RSS is the kernel's high-water mark of the subprocess (``ru_maxrss`` from ``wait4``, measured
by the small helper ``peak_rss.py``); the subprocess tree is also polled every 20 ms for
``RssAnon`` (its anonymous memory).

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_memory.py [--quick] [--out FILE]

Writes ``TSKDBackend/benchmarks/results/memory.json`` and prints a table. ``--quick`` uses small
sizes (a smoke test, not a measurement). Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import machine_info

RESULTS = Path(__file__).resolve().parent / "results" / "memory.json"
SRC = Path(__file__).resolve().parents[1] / "src"
GIB = 1 << 30
MIB = 1 << 20
TARGET_BYTES = 4 * GIB
FULL = {"ct_shape": (600, 512, 512), "items": 3000, "item_size": 256, "classes": 4, "package_size": 256}
QUICK = {"ct_shape": (40, 128, 128), "items": 256, "item_size": 64, "classes": 4, "package_size": 64}


def _env() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1")


def measure(cmd: list[str]) -> dict[str, Any]:
    """Run ``cmd`` under ``peak_rss.py`` (a small process, see there); its peak memory, time, stdout."""
    helper = Path(__file__).resolve().with_name("peak_rss.py")
    done = subprocess.run([sys.executable, str(helper), "--", *cmd], env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"peak_rss.py failed: {done.stderr[-3000:]}")
    result = json.loads(done.stdout)
    if result.pop("returncode") != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result['stderr_tail']}")
    result.pop("stderr_tail")
    return result


# ---------------------------------------------------------------------------------------------- CT
def write_ct(path: Path, shape: tuple[int, int, int]) -> dict[str, Any]:
    """A CT-like int16 volume ``(k, j, i)`` in HU, written slice block by slice block into memory
    once (the file writer needs the whole image), then to ``path``."""
    import SimpleITK as sitk

    k_n, j_n, i_n = shape
    rng = np.random.default_rng(0)
    volume = np.empty(shape, np.int16)
    j, i = np.meshgrid(np.linspace(-1, 1, j_n, dtype=np.float32), np.linspace(-1, 1, i_n, dtype=np.float32),
                       indexing="ij")
    for k in range(k_n):
        z = 2 * k / max(1, k_n - 1) - 1
        body = (i / 0.85) ** 2 + (j / 0.65) ** 2 < 1
        liver = ((i + 0.3) / 0.35) ** 2 + ((j - 0.1) / 0.3) ** 2 + (z / 0.6) ** 2 < 1
        kidney = ((np.abs(i) - 0.45) / 0.12) ** 2 + ((j + 0.25) / 0.15) ** 2 + (z / 0.4) ** 2 < 1
        spine = (i / 0.1) ** 2 + ((j + 0.45) / 0.1) ** 2 < 1
        hu = np.full(body.shape, -1000.0, np.float32)
        hu[body] = -80.0
        hu[body & (np.abs(j) < 0.5)] = 40.0
        hu[liver & body] = 60.0
        hu[kidney & body] = 150.0
        hu[spine] = 700.0
        hu += rng.normal(0, 12, hu.shape).astype(np.float32)
        volume[k] = np.clip(hu, -1024, 3071).astype(np.int16)
    image = sitk.GetImageFromArray(volume)
    image.SetSpacing((0.8, 0.8, 1.5))
    del volume
    sitk.WriteImage(image, str(path), useCompression=True)
    return {"shape_kji": list(shape), "dtype": "int16", "file_bytes": path.stat().st_size,
            "raw_bytes": int(np.prod(shape)) * 2}


def make_package(folder: Path, size: int, mode: str) -> Path:
    import torch

    from tskd.data.labels import LabelTable
    from tskd.export import write_student_package
    from tskd.preprocess import NormalizationSpec
    from tskd.student import build_student

    torch.manual_seed(0)
    model = build_student("unet_small", num_classes=4, input_size=size).eval()
    spec = (NormalizationSpec(mode="ct", lower=-160.0, upper=240.0, mean=40.0, std=80.0) if mode == "ct"
            else NormalizationSpec(mode="percentile"))
    return write_student_package(folder, student=model, labels=LabelTable.default(range(4)), input_size=size,
                                 slice_axis=0, normalization=spec, teacher_info=None, metrics=None)


def bench_predict(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    ct = workdir / "ct.nii.gz"
    t0 = time.monotonic()
    volume = write_ct(ct, sizes["ct_shape"])
    volume["write_seconds"] = round(time.monotonic() - t0, 1)
    results: dict[str, Any] = {"volume": volume, "package_size": sizes["package_size"], "runs": {}}
    for mode in ("ct", "percentile"):
        package = make_package(workdir / f"package_{mode}", sizes["package_size"], mode)
        out = workdir / f"pred_{mode}"
        cmd = [sys.executable, "-m", "tskd", "predict", "--model", str(package), "--input", str(ct),
               "--output", str(out) + os.sep]
        run = measure(cmd)
        run.pop("stdout")
        written = sorted(out.iterdir())
        if len(written) != 1:
            raise RuntimeError(f"tskd predict wrote {len(written)} files in {out}")
        run["output_bytes"] = written[0].stat().st_size
        run["under_target"] = run["peak_rss_bytes"] < TARGET_BYTES
        results["runs"][mode] = run
    return results


# ---------------------------------------------------------------------------------------- transfer
def write_transfer_set(folder: Path, items: int, size: int, classes: int) -> int:
    """A transfer set of ``items`` items (cheap synthetic content); its size on disk in bytes."""
    from tskd.data.transfer_set import TransferSetWriter

    rng = np.random.default_rng(0)
    writer = TransferSetWriter(folder, image_size=size, num_classes=classes)
    batch = 64
    base_image = rng.normal(size=(batch, size, size)).astype(np.float32)
    base_soft = rng.dirichlet(np.ones(classes), size=(batch, size, size)).transpose(0, 3, 1, 2).astype(np.float32)
    for first in range(0, items, batch):
        n = min(batch, items - first)
        writer.add_batch(np.roll(base_image[:n], first, axis=-1), base_soft[:n], source="synthetic",
                         seeds=list(range(first, first + n)), model="bench")
    writer.close()
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def stream_transfer_set(folder: str, batch_size: int, *, read: bool = True) -> None:
    """Child process: one epoch of the distillation data path (engine sampler, random order);
    with ``read=False`` only the imports and the opened dataset (the baseline)."""
    import torch
    from torch.utils.data import DataLoader

    from tskd.engine.sampling import DrawDataset, StepBatchSampler
    from tskd.data.transfer_set import TransferSetDataset

    dataset = TransferSetDataset(folder)
    steps = len(dataset) // batch_size if read else 0
    sampler = StepBatchSampler(dataset_size=len(dataset), batch_size=batch_size, max_steps=steps, seed=0)
    loader = DataLoader(DrawDataset(dataset), batch_sampler=sampler, num_workers=0)
    seen = 0
    checksum = 0.0
    for batch in loader:
        seen += int(batch["image"].shape[0])
        checksum += float(batch["soft"][:, :, 0, 0].sum())
    print(json.dumps({"items": seen, "shards_opened": dataset.transfer_set.shards_opened,
                      "checksum": checksum, "torch_threads": torch.get_num_threads()}))


def bench_transfer(workdir: Path, sizes: dict[str, Any]) -> dict[str, Any]:
    folder = workdir / "transfer_set"
    t0 = time.monotonic()
    disk = write_transfer_set(folder, sizes["items"], sizes["item_size"], sizes["classes"])
    write_s = time.monotonic() - t0
    me = [sys.executable, str(Path(__file__).resolve())]
    baseline = measure(me + ["--child-baseline", str(folder)])
    run = measure(me + ["--child-stream", str(folder)])
    child = json.loads(run.pop("stdout").strip().splitlines()[-1])
    growth = run["peak_rss_bytes"] - baseline["peak_rss_bytes"]
    return {"items": sizes["items"], "item_size": sizes["item_size"], "classes": sizes["classes"],
            "disk_bytes": disk, "write_seconds": round(write_s, 1), **run, **child,
            "baseline_rss_bytes": baseline["peak_rss_bytes"], "baseline_rss_anon_bytes": baseline["peak_rss_anon_bytes"],
            "growth_rss_bytes": growth, "growth_over_disk": round(growth / disk, 3)}


# ------------------------------------------------------------------------------------------- main
def _gib(n: int) -> str:
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / MIB:.0f} MiB"


def format_table(results: dict[str, Any]) -> str:
    lines = []
    volume = results["predict"]["volume"]
    lines.append(f"tskd predict, {'x'.join(map(str, reversed(volume['shape_kji'])))} int16 CT "
                 f"({_gib(volume['raw_bytes'])} raw, {_gib(volume['file_bytes'])} .nii.gz), "
                 f"unet_small {results['predict']['package_size']}, CPU:")
    lines.append(f"  {'normalisation':<14}{'peak RSS':>12}{'peak anon':>12}{'time':>9}  under 4 GiB")
    for mode, run in results["predict"]["runs"].items():
        lines.append(f"  {mode:<14}{_gib(run['peak_rss_bytes']):>12}{_gib(run['peak_rss_anon_bytes']):>12}"
                     f"{run['seconds']:>8.1f}s  {'yes' if run['under_target'] else 'NO'}")
    t = results["transfer_set"]
    lines.append(f"transfer set streaming, {t['items']} items of {t['item_size']}x{t['item_size']}, "
                 f"{t['classes']} classes, {_gib(t['disk_bytes'])} on disk, one epoch in random order:")
    lines.append(f"  peak RSS {_gib(t['peak_rss_bytes'])} (peak anon {_gib(t['peak_rss_anon_bytes'])}); the same process "
                 f"reading nothing: {_gib(t['baseline_rss_bytes'])}")
    lines.append(f"  growth while streaming: {_gib(t['growth_rss_bytes'])} = {t['growth_over_disk']:.1%} of the "
                 f"size on disk; {t['seconds']:.1f} s, {t['shards_opened']} shard openings")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test, not a measurement")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON results (default: {RESULTS})")
    parser.add_argument("--child-stream", metavar="FOLDER", help=argparse.SUPPRESS)
    parser.add_argument("--child-baseline", metavar="FOLDER", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_stream or args.child_baseline:
        stream_transfer_set(args.child_stream or args.child_baseline, batch_size=16, read=bool(args.child_stream))
        return 0
    sizes = QUICK if args.quick else FULL
    with tempfile.TemporaryDirectory(prefix="tskd-bench-memory-") as tmp:
        workdir = Path(tmp)
        results = {"date": time.strftime("%Y-%m-%d"), "machine": machine_info(), "quick": args.quick,
                   "target_bytes": TARGET_BYTES,
                   "command": "PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_memory.py"
                              + (" --quick" if args.quick else ""),
                   "predict": bench_predict(workdir, sizes), "transfer_set": bench_transfer(workdir, sizes)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(format_table(results))
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
