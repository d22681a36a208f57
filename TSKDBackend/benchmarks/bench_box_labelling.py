"""Simulated box labelling with the zero-shot LiteMedSAM (issue 33): what a user's box gives.

A user's box is the reference mask's bounding box with each side moved independently by a random
amount of up to ``e`` of the box's width (x sides) or height (y sides), ``e`` = 0, 5 % and 10 %
(seeded). Through the product's path (:class:`tskd.runtime.OnnxBoxPredictor`, fp32 graphs):

* **HC18** (2D): Dice per image.
* **Hippocampus** (3D, structures 1 anterior and 2 posterior, slices along numpy axis 0):
  - per-slice Dice: a box on every slice holding the structure;
  - one-box propagation: a box on the structure's middle slice,
    :func:`tskd.runtime.box_propagation.propagate_box`; 3D Dice;
  - boxes to reach Dice >= 0.9: after the propagated box, the simulated user boxes the slice with
    the most wrong voxels (its mask replaced by that box's mask, or cleared when the slice holds
    none of the structure), until the 3D Dice reaches 0.9 or every slice has been corrected
    ("Dice at end": the 3D Dice when the user stops).

Each slice is encoded once and its embedding reused for every box on it (as the Slicer module does);
encoder and decoder times per call are reported too.

**Task-tuned rows** (``--tuned-hc18 10,40 --tuned-volumes 3``): the same evaluation through the box
model a run tunes and exports (:func:`tskd.pipeline.teacher_stage.tune_box_model` with the ``cpu-small``
preset's ``teacher.box_tuning``, i.e. what ``tskd train --base litemedsam`` gives; then
:func:`tskd.export.export_box_model`), tuned on that many labelled HC18 images or hippocampus volumes.
Test images and volumes are held out from every tuning set: HC18 test images come from subjects 400
and above, tuning images from subjects below 400 (a subject is the first three digits); the test
volumes are the evenly chosen ``--volumes``, tuning volumes come from the others. The zero-shot rows
use the same test sets, so every row of a table sees the same boxes (same seed).

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_box_labelling.py \
        [--checkpoint lite_medsam.pth] [--hc18-images 50] [--volumes 10] [--threads 2] \
        [--tuned-hc18 10,40] [--tuned-volumes 3]

Writes ``TSKDBackend/benchmarks/results/box_labelling.json`` and prints the tables.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from benchlib import REPO, RESULTS_DIR, machine_info, now, peak_rss_mib, write_results

from tskd.metrics import mask_dice as dice

RESULTS = RESULTS_DIR / "box_labelling.json"
DATA = REPO.parent / "shared" / "data"
ERRORS = (0.0, 0.05, 0.10)
TARGET = 0.9


class CachedPredictor:
    """An :class:`OnnxBoxPredictor` that encodes each distinct image once (keyed by its bytes)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: dict[str, tuple[np.ndarray, Any]] = {}
        self.encoder_s: list[float] = []
        self.decoder_s: list[float] = []

    def set_image(self, image: np.ndarray) -> None:
        from tskd.preprocess.prompt import prompt_input

        key = hashlib.sha1(np.ascontiguousarray(image).tobytes() + str(image.shape).encode()).hexdigest()
        if key not in self.cache:
            pixels, frame = prompt_input(image, self.inner.input_size)
            start = time.perf_counter()
            embedding = self.inner.encode(pixels)
            self.encoder_s.append(time.perf_counter() - start)
            self.cache[key] = (embedding, frame)
        self.inner.set_encoded(*self.cache[key])

    def predict(self, box: Any) -> np.ndarray:
        start = time.perf_counter()
        mask = self.inner.predict(box)
        self.decoder_s.append(time.perf_counter() - start)
        return mask


def summary(values: list[float]) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "median": float(np.median(values)), "min": float(np.min(values)),
            "n": len(values)}


HC18_TEST_FROM_SUBJECT = 400


def hc18_split(count: int) -> tuple[list[Path], list[Path]]:
    """``count`` HC18 test images spread evenly over subjects >= 400, and the tuning pool (subjects < 400)."""
    images = sorted((DATA / "hc18" / "images").glob("*.png"))
    test = [p for p in images if int(p.name[:3]) >= HC18_TEST_FROM_SUBJECT]
    pool = [p for p in images if int(p.name[:3]) < HC18_TEST_FROM_SUBJECT]
    return test[:: max(1, len(test) // count)][:count], pool


def hippocampus_split(count: int) -> tuple[list[str], list[str]]:
    """``count`` test volumes spread evenly over the sorted names, and the others (the tuning pool)."""
    names = sorted(p.name for p in (DATA / "hippocampus" / "labelsTr").glob("*.nii.gz"))
    test = names[:: max(1, len(names) // count)][:count] if count > 0 else []
    return test, [n for n in names if n not in test]


def bench_hc18(predictor: CachedPredictor, images: list[Path], seed: int) -> dict[str, Any]:
    from PIL import Image

    from tskd.preprocess.prompt import box_from_mask, jitter_box

    root = DATA / "hc18"
    count = len(images)
    rng = np.random.default_rng(seed)
    per_error: dict[str, list[float]] = {f"{e:.2f}": [] for e in ERRORS}
    for index, path in enumerate(images):
        image = np.asarray(Image.open(path).convert("L"))
        mask = np.asarray(Image.open(root / "masks" / path.name))
        truth = (mask[..., 0] if mask.ndim == 3 else mask) > 127
        box = box_from_mask(truth)
        predictor.set_image(image)
        for error in ERRORS:
            per_error[f"{error:.2f}"].append(dice(predictor.predict(jitter_box(box, error, rng)), truth))
        print(f"  hc18 {index + 1}/{count} {path.name}: " + ", ".join(f"{k}: {v[-1]:.3f}" for k, v in per_error.items()),
              file=sys.stderr, flush=True)
    return {"images": count, "dice": {k: summary(v) for k, v in per_error.items()}}


def boxes_to_target(predictor: CachedPredictor, volume: np.ndarray, truth: np.ndarray, mask: np.ndarray,
                    error: float, rng: np.random.Generator) -> tuple[int | None, float]:
    """Boxes after the first until the 3D Dice reaches the target (``None``: never), and the Dice then."""
    from tskd.preprocess.prompt import box_from_mask, jitter_box

    mask = mask.copy()
    corrected: set[int] = set()
    boxes = 0
    while dice(mask, truth) < TARGET:
        wrong = [(int((mask[k] ^ truth[k]).sum()), k) for k in range(volume.shape[0]) if k not in corrected]
        wrong = [w for w in wrong if w[0] > 0]
        if not wrong:
            return None, dice(mask, truth)
        _, k = max(wrong)
        corrected.add(k)
        boxes += 1
        reference = box_from_mask(truth[k])
        if reference is None:
            mask[k] = False  # the user erases what leaked onto a slice without the structure
            continue
        predictor.set_image(volume[k])
        mask[k] = predictor.predict(jitter_box(reference, error, rng))
    return boxes, dice(mask, truth)


def bench_hippocampus(predictor: CachedPredictor, chosen: list[str], seed: int) -> dict[str, Any]:
    from tskd.data.image import read_image
    from tskd.preprocess.prompt import box_from_mask, jitter_box
    from tskd.runtime.box_propagation import propagate_box

    root = DATA / "hippocampus"
    count = len(chosen)
    rng = np.random.default_rng(seed)
    rows = []
    for index, name in enumerate(chosen):
        volume = read_image(root / "imagesTr" / name).array.astype(np.float32)
        labels = read_image(root / "labelsTr" / name, kind="label").array
        predictor.cache.clear()  # one volume's slices at a time: the memory stays small
        for structure in (1, 2):
            truth = labels == structure
            slices = np.flatnonzero(truth.any(axis=(1, 2)))
            middle = int(slices[len(slices) // 2])
            row: dict[str, Any] = {"volume": name, "structure": structure, "slices": int(slices.size)}
            for error in ERRORS:
                key = f"{error:.2f}"
                per_slice = []
                for k in slices:
                    predictor.set_image(volume[k])
                    per_slice.append(dice(predictor.predict(jitter_box(box_from_mask(truth[k]), error, rng)), truth[k]))
                result = propagate_box(predictor, volume, jitter_box(box_from_mask(truth[middle]), error, rng), middle, 0)
                extra, final = boxes_to_target(predictor, volume, truth, result.mask, error, rng)
                row[key] = {
                    "slice_dice_mean": float(np.mean(per_slice)),
                    "propagated_dice": dice(result.mask, truth),
                    "propagated_slices": len(result.slices),
                    "stopped": result.stopped,
                    "boxes_to_0.9": None if extra is None else 1 + extra,
                    "dice_after_boxes": final,
                }
            rows.append(row)
            print(f"  hippocampus {index + 1}/{count} {name} structure {structure}: "
                  + ", ".join(f"{e}: slice {row[e]['slice_dice_mean']:.3f} prop {row[e]['propagated_dice']:.3f} "
                              f"boxes {row[e]['boxes_to_0.9']}" for e in (f"{x:.2f}" for x in ERRORS)),
                  file=sys.stderr, flush=True)
    table = {}
    for structure in (1, 2):
        mine = [r for r in rows if r["structure"] == structure]
        for error in ERRORS:
            key = f"{error:.2f}"
            boxes = [r[key]["boxes_to_0.9"] for r in mine]
            reached = [b for b in boxes if b is not None]
            table[f"{structure}/{key}"] = {
                "structure": structure, "error": error, "volumes": len(mine),
                "slices_mean": float(np.mean([r["slices"] for r in mine])),
                "slice_dice": summary([r[key]["slice_dice_mean"] for r in mine]),
                "propagated_dice": summary([r[key]["propagated_dice"] for r in mine]),
                "boxes_to_0.9_median": float(np.median(reached)) if reached else None,
                "boxes_to_0.9_mean": float(np.mean(reached)) if reached else None,
                "reached_0.9": len(reached),
                "dice_after_boxes": summary([r[key]["dice_after_boxes"] for r in mine]),
            }
    return {"volumes": len(chosen), "rows": rows, "table": table}


def tuned_box_model(checkpoint: Path, cases: list[tuple[Path, Path]], work: Path, seed: int) -> tuple[Path, dict]:
    """The box model ``tskd train --base litemedsam`` would tune and export on these labelled cases
    (cpu-small's data preparation and ``teacher.box_tuning``), in ``work``; reused when already there."""
    import csv

    from tskd.export.box_export import export_box_model, verify_on_pattern
    from tskd.pipeline.data_stage import load_prepared_data
    from tskd.pipeline.run import run_stages
    from tskd.pipeline.run_folder import RunFolder
    from tskd.pipeline.stage import StageContext
    from tskd.pipeline.teacher_stage import tune_box_model
    from tskd.runconfig import resolve_config

    folder = work / "box_model_onnx"
    tuned = work / "run" / "teacher" / "box_model"
    started = time.perf_counter()
    work.mkdir(parents=True, exist_ok=True)
    manifest = work / "cases.csv"
    with manifest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "label"])
        writer.writerows([str(image), str(label)] for image, label in cases)
    config = resolve_config(preset="cpu-small", base=str(checkpoint), seed=seed,
                            overrides={"teacher": {"embedding_cache": str(work.parent / "embeddings")}})
    run = RunFolder(work / "run")
    run_stages(str(manifest), run.root, config, stages=("data",))
    data = load_prepared_data(run)
    model, metrics = tune_box_model(tuned, data, config, StageContext(), base=checkpoint, architecture="litemedsam",
                                    input_size=config.teacher.model_input_size, cache_root=work.parent / "embeddings")
    if not (folder / "box_model.json").is_file():
        export_box_model(model, folder, name=f"litemedsam tuned on {len(cases)} cases")
        verify_on_pattern(model, folder)
    return folder, {"cases": len(cases), "training_slices": int(data.train_labelled.size),
                    "validation_dice": metrics.get("val_dice"), "tuning_and_export_s": time.perf_counter() - started}


def _print_hc18(title: str, hc18: dict[str, Any]) -> None:
    print(f"\nHC18, {hc18['images']} images of held-out subjects, {title}: Dice by box error")
    print(f"{'box error':<10}{'mean':>7}{'median':>8}{'min':>7}")
    for key, values in hc18["dice"].items():
        print(f"{float(key) * 100:>8.0f}% {values['mean']:>7.3f}{values['median']:>8.3f}{values['min']:>7.3f}")


def _print_hippocampus(title: str, hippocampus: dict[str, Any]) -> None:
    print(f"\nHippocampus, {hippocampus['volumes']} held-out volumes, axis 0, {title}")
    print(f"{'structure':<11}{'error':>6}{'slices':>7}{'slice Dice':>11}{'1-box prop':>11}{'boxes to 0.9':>13}"
          f"{'reached':>8}{'Dice at end':>12}")
    for row in hippocampus["table"].values():
        boxes = f"{row['boxes_to_0.9_median']:.0f}" if row["boxes_to_0.9_median"] is not None else "-"
        name = {1: "anterior", 2: "posterior"}[row["structure"]]
        print(f"{name:<11}{row['error'] * 100:>5.0f}%{row['slices_mean']:>7.1f}{row['slice_dice']['mean']:>11.3f}"
              f"{row['propagated_dice']['mean']:>11.3f}{boxes:>13}{row['reached_0.9']:>5}/{row['volumes']}"
              f"{row['dice_after_boxes']['mean']:>12.3f}")


def _counts(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()] if text else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="lite_medsam.pth (default: the cached litemedsam weights)")
    parser.add_argument("--model", type=Path, help="an exported box model folder (default: export --checkpoint)")
    parser.add_argument("--hc18-images", type=int, default=50)
    parser.add_argument("--volumes", type=int, default=10, help="hippocampus test volumes (0: HC18 only)")
    parser.add_argument("--quick", action="store_true", help="5 HC18 images, 1 volume")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--tuned-hc18", default="", help="also the box models tuned on this many HC18 images, e.g. 10,40")
    parser.add_argument("--tuned-volumes", default="", help="also the box models tuned on this many hippocampus volumes, e.g. 3")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "bench-box-model",
                        help="where the zero-shot export and the tuning runs are kept (reused when rerun)")
    args = parser.parse_args(argv)
    if args.quick:
        args.hc18_images, args.volumes = 5, 1
    from tskd.inference.box_segment import zero_shot_box_model
    from tskd.runtime import OnnxBoxPredictor

    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    if checkpoint is None:
        from tskd.foundation.resolve import resolve_base

        checkpoint = Path(resolve_base("litemedsam"))
    model = args.model or zero_shot_box_model(str(checkpoint), args.work / "zero-shot")
    started, load_before = now(), [round(x, 2) for x in os.getloadavg()]
    hc18_test, hc18_pool = hc18_split(args.hc18_images)
    volumes_test, volumes_pool = hippocampus_split(args.volumes)
    models: list[dict[str, Any]] = [{"name": "zero-shot", "folder": model, "tuning": None, "hc18": True, "hippocampus": True}]
    for count in _counts(args.tuned_hc18):
        pool = hc18_pool[:: max(1, len(hc18_pool) // count)][:count]
        cases = [(p, DATA / "hc18" / "masks" / p.name) for p in pool]
        folder, tuning = tuned_box_model(checkpoint, cases, args.work / f"tuned-hc18-{count}", args.seed)
        models.append({"name": f"tuned on {count} HC18 images", "folder": folder, "tuning": tuning, "hc18": True,
                       "hippocampus": False})
    for count in _counts(args.tuned_volumes):
        pool = volumes_pool[:: max(1, len(volumes_pool) // count)][:count]
        root = DATA / "hippocampus"
        cases = [(root / "imagesTr" / n, root / "labelsTr" / n) for n in pool]
        folder, tuning = tuned_box_model(checkpoint, cases, args.work / f"tuned-hippocampus-{count}", args.seed)
        models.append({"name": f"tuned on {count} hippocampus volumes", "folder": folder, "tuning": tuning,
                       "hc18": False, "hippocampus": True})
    rows = []
    for entry in models:
        predictor = CachedPredictor(OnnxBoxPredictor(entry["folder"], threads=args.threads))
        row = {"model": entry["name"], "folder": str(entry["folder"]), "tuning": entry["tuning"]}
        if entry["hc18"]:
            row["hc18"] = bench_hc18(predictor, hc18_test, args.seed)
        if entry["hippocampus"] and volumes_test:  # --volumes 0: HC18 only
            row["hippocampus"] = bench_hippocampus(predictor, volumes_test, args.seed)
        row.update({"encoder_s_median": float(np.median(predictor.encoder_s)),
                    "decoder_ms_median": 1000 * float(np.median(predictor.decoder_s)),
                    "encoder_calls": len(predictor.encoder_s), "decoder_calls": len(predictor.decoder_s)})
        rows.append(row)
    results = {
        "benchmark": "box_labelling", "started": started, "finished": now(),
        "machine": machine_info(threads=args.threads), "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "quick": bool(args.quick),
        "box_errors": list(ERRORS), "seed": args.seed,
        "hc18_test_images": [p.name for p in hc18_test], "hippocampus_test_volumes": volumes_test,
        "peak_rss_mib": peak_rss_mib(), "models": rows,
    }
    write_results(results, args.out)
    print(f"Simulated box labelling, LiteMedSAM (ONNX fp32, {args.threads} threads); load "
          f"{load_before} -> {results['load_average_after']}")
    for row in rows:
        print(f"\n== {row['model']}: encoder {row['encoder_s_median']:.2f} s/slice, decoder "
              f"{row['decoder_ms_median']:.0f} ms/box (median)"
              + (f"; tuning + export {row['tuning']['tuning_and_export_s']:.0f} s, "
                 f"{row['tuning']['training_slices']} training slices" if row["tuning"] else ""))
        if "hc18" in row:
            _print_hc18(row["model"], row["hc18"])
        if "hippocampus" in row:
            _print_hippocampus(row["model"], row["hippocampus"])
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
