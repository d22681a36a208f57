"""Speed of segmenting inside Slicer: "Segment volume" and live mode, with slicer-core's real scene.

The student is an untrained ``unet_small`` at input ``--input-size`` (default 256, the ``standard``
preset's; ``cpu-small`` trains at 128) exported as a real package (speed does not depend on the weights), run by ``tskd.runtime.OnnxSegmenter`` on the CPU. The volume is a
256 x 256 x 128 float32 phantom with an oblique geometry in a ``vtkMRMLScene`` set up as in the
tests (``Testing/slicerCore.py``).

- **Segment volume**: from the click to the segmentation node updated, excluding the one-time
  model load: the volume's voxels copied out of the node, ``segment_volume`` (batches of
  ``--batch`` slices), the label values written into a segmentation node (named, coloured
  segments on the volume's grid). Median of ``--repeats`` runs, with the share of each step.
- **Live slice**: ``LiveSegmentation.updateForView`` for a view moved to another slice: index from
  the view, one model call, the slice written into the segments' shared labelmap. Median and 90th
  percentile over ``--slices`` slices; the one-time set-up (voxel copy, whole-volume statistics) apart.

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_slicer_segment.py [--threads N] [--input-size S]

Writes ``TSKDBackend/benchmarks/results/slicer_segment.json`` and prints a table. Targets on a
2-core CPU: under 3 s per volume and under 150 ms per live slice.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO / "SlicerTSKD"), str(REPO / "Testing")]

RESULTS = Path(__file__).resolve().parent / "results" / "slicer_segment.json"
SHAPE = (128, 256, 256)  # numpy (k, j, i)
DEFAULT_SIZE = 256
TARGET_VOLUME_S = 3.0
TARGET_SLICE_MS = 150.0


def writePackage(folder: Path, size: int) -> Path:
    import torch

    from tskd.data.labels import Label, LabelTable
    from tskd.export import write_student_package
    from tskd.preprocess import NormalizationSpec
    from tskd.student import build_student

    torch.manual_seed(0)
    labels = LabelTable([Label(0, "background", None), Label(1, "organ_a", (0.85, 0.4, 0.31)),
                         Label(2, "organ_b", (0.5, 0.68, 0.5))], source="benchmark")
    return write_student_package(folder / "package", student=build_student("unet_small", num_classes=3, input_size=size),
                                 labels=labels, input_size=size, slice_axis=0,
                                 normalization=NormalizationSpec(mode="percentile", p_low=0.5, p_high=99.5),
                                 teacher_info=None, metrics={})


def axialView(ijkToWorld: np.ndarray, index: int) -> np.ndarray:
    """A SliceToRAS in the plane of volume slice ``index`` (k)."""
    x = ijkToWorld[:3, 0] / np.linalg.norm(ijkToWorld[:3, 0])
    normal = np.cross(ijkToWorld[:3, 0], ijkToWorld[:3, 1])
    normal /= np.linalg.norm(normal)
    matrix = np.eye(4)
    matrix[:3, 0], matrix[:3, 1], matrix[:3, 2] = x, np.cross(normal, x), normal
    matrix[:3, 3] = (ijkToWorld @ np.array([128.0, 128.0, float(index), 1.0]))[:3]
    return matrix


def percentile(values: List[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(threads: int, batch: int, repeats: int, slices: int, size: int = DEFAULT_SIZE) -> Dict[str, Any]:
    from slicerCore import installScene

    from SlicerTSKDLib import sceneData
    from SlicerTSKDLib.segment.segmentationLogic import LiveSegmentation, applyLabelsToSegmentation, packageLabels, segmentArray
    from SlicerTSKDLib.selfTest import addPhantomToScene
    from tskd.runtime import OnnxSegmenter

    scene, restore = installScene()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            package = writePackage(Path(tmp), size)
            start = time.perf_counter()
            model = OnnxSegmenter(package, threads=threads)
            loadS = time.perf_counter() - start
            volume, _, _ = addPhantomToScene(scene, "bench", seed=0, shape=SHAPE, withSegmentation=False)
            labels = packageLabels(model.package.labels)
            segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "bench result")
            runs = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                array = sceneData.volumeArrayCopy(volume)
                t1 = time.perf_counter()
                values = segmentArray(model, array, batchSize=batch)
                t2 = time.perf_counter()
                applyLabelsToSegmentation(values, volume, segmentation, labels)
                t3 = time.perf_counter()
                runs.append({"copy_s": t1 - t0, "segment_s": t2 - t1, "to_segmentation_s": t3 - t2, "total_s": t3 - t0})
            best = sorted(runs, key=lambda r: r["total_s"])[len(runs) // 2]

            t0 = time.perf_counter()
            live = LiveSegmentation(model, volume, segmentation, labels)
            setupS = time.perf_counter() - t0
            ijkToWorld = sceneData.ijkToWorldArray(volume)
            live.updateForView(axialView(ijkToWorld, 0))  # first write: shared labelmap checked
            perSlice = []
            for index in np.linspace(5, SHAPE[0] - 5, slices).astype(int):
                view = axialView(ijkToWorld, int(index))
                t0 = time.perf_counter()
                assert live.updateForView(view) == int(index)
                perSlice.append((time.perf_counter() - t0) * 1000.0)
    finally:
        restore()
    return {
        "volume_shape_kji": list(SHAPE),
        "student": "unet_small",
        "input_size": size,
        "threads": threads,
        "batch": batch,
        "model_load_s": loadS,
        "segment_volume": {"median": best, "runs": runs, "target_s": TARGET_VOLUME_S},
        "live_slice": {"setup_s": setupS, "median_ms": statistics.median(perSlice), "p90_ms": percentile(perSlice, 90),
                       "max_ms": max(perSlice), "slices": len(perSlice), "target_ms": TARGET_SLICE_MS},
    }


def main(argv: List[str] = None) -> int:
    from tskd.runtime import physical_cores

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=physical_cores(), help="onnxruntime threads (default: physical cores)")
    parser.add_argument("--batch", type=int, default=16, help="slices per model call for the whole volume")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--slices", type=int, default=20)
    parser.add_argument("--input-size", type=int, default=DEFAULT_SIZE, help="the student's input size in pixels")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    result = run(args.threads, args.batch, args.repeats, args.slices, args.input_size)
    result["machine"] = {"cpu": platform.processor() or platform.machine(), "python": platform.python_version(),
                         "date": time.strftime("%Y-%m-%d")}
    median = result["segment_volume"]["median"]
    live = result["live_slice"]
    rows = [
        ("model load (once)", "{:.2f} s".format(result["model_load_s"]), ""),
        ("segment volume: copy voxels", "{:.3f} s".format(median["copy_s"]), ""),
        ("segment volume: model", "{:.2f} s".format(median["segment_s"]), ""),
        ("segment volume: into segmentation", "{:.3f} s".format(median["to_segmentation_s"]), ""),
        ("segment volume: total", "{:.2f} s".format(median["total_s"]), "< {:g} s".format(TARGET_VOLUME_S)),
        ("live: set-up (once per volume)", "{:.2f} s".format(live["setup_s"]), ""),
        ("live: per slice, median", "{:.0f} ms".format(live["median_ms"]), "< {:g} ms".format(TARGET_SLICE_MS)),
        ("live: per slice, p90", "{:.0f} ms".format(live["p90_ms"]), ""),
    ]
    print("{} x {} x {} volume, unet_small at {}, {} threads, batch {}".format(*SHAPE[::-1], args.input_size, args.threads, args.batch))
    for name, value, target in rows:
        print("{:<36} {:>10} {:>10}".format(name, value, target))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
