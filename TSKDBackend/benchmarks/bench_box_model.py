"""LiteMedSAM box-to-mask on the CPU: speed and zero-shot Dice of torch, ONNX fp32 and ONNX int8.

For each configuration, in a fresh process on ``--threads`` CPU threads (default 2): the image
encoder's seconds per 256-px image (the model call on the prepared input, and ``set_image`` with
the preprocessing), the decoder's milliseconds per box (the graph alone, and ``predict`` with the
mask brought back to the image), the zero-shot box Dice on the same HC18 images (boxes: the
reference masks' bounding boxes) and the process's peak RSS.

Configurations:

* ``torch-fp32``: :class:`tskd.teacher.prompted.BoxPredictor` on the official weights;
* ``onnx-fp32``: the exported graphs (:func:`tskd.export.export_box_model`) on onnxruntime
  (:class:`tskd.runtime.OnnxBoxPredictor`);
* ``onnx-int8``: the encoder with dynamic int8 quantisation of its MatMul/Gemm weights
  (``onnxruntime.quantization.quantize_dynamic``), the decoder as exported;
* ``onnx-int8-conv``: also the convolutions (ConvInteger); not run by default (slower, and the Dice drops).

bf16 is not measured: onnxruntime's CPU provider has no bf16 kernels for MatMul, Add or Conv
(checked with onnxruntime 1.31.1: "Could not find an implementation"), so a bf16 graph cannot run
there.

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_box_model.py \
        --checkpoint PATH/lite_medsam.pth [--images 50] [--threads 2] [--configs torch-fp32,onnx-fp32,...]

``--checkpoint`` defaults to the cached ``litemedsam`` weights (``tskd foundation get litemedsam``).
Writes ``TSKDBackend/benchmarks/results/box_model.json`` and prints a table. Run it on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from benchlib import REPO, RESULTS_DIR, machine_info, now, peak_rss_mib, run_worker, worker_reply, write_results

RESULTS = RESULTS_DIR / "box_model.json"
CONFIGS = ("torch-fp32", "onnx-fp32", "onnx-int8", "onnx-int8-conv")
DEFAULT_CONFIGS = ("torch-fp32", "onnx-fp32", "onnx-int8")
QUANTISED = {"onnx-int8": ["MatMul", "Gemm"], "onnx-int8-conv": ["MatMul", "Gemm", "Conv"]}
HC18 = REPO.parent / "shared" / "data" / "hc18"


def hc18_pairs(root: Path, count: int):
    """``count`` HC18 images and head masks spread evenly over the sorted names (as the tests choose them)."""
    import numpy as np
    from PIL import Image

    images = sorted((root / "images").glob("*.png"))
    for path in images[:: len(images) // count][:count]:
        image = np.asarray(Image.open(path).convert("L"))
        mask = np.asarray(Image.open(root / "masks" / path.name))
        yield path.name, image, (mask[..., 0] if mask.ndim == 3 else mask) > 127


def quantise(folder: Path, out: Path, op_types: list[str]) -> Path:
    """A copy of the box model whose encoder has int8 weights for ``op_types`` (dynamic quantisation)."""
    import shutil

    from onnxruntime.quantization import QuantType, quantize_dynamic

    out.mkdir(parents=True, exist_ok=True)
    for name in ("box_decoder.onnx", "box_model.json"):
        shutil.copy2(folder / name, out / name)
    quantize_dynamic(str(folder / "box_encoder.onnx"), str(out / "box_encoder.onnx"),
                     op_types_to_quantize=op_types, weight_type=QuantType.QInt8, per_channel=True)
    return out


def prepare(spec: dict[str, Any]) -> dict[str, Any]:
    """Worker: export the fp32 box model (once, kept in ``work``) and the quantised copies."""
    work = Path(spec["work"])
    fp32 = work / "onnx-fp32"
    if not (fp32 / "box_model.json").is_file():
        import torch

        from tskd.export import export_box_model
        from tskd.teacher.checkpoints import load_pretrained_segmenter

        torch.set_num_threads(spec["threads"])
        model = load_pretrained_segmenter(spec["checkpoint"], input_size=256, num_classes=2)
        export_box_model(model, fp32, name="litemedsam")
    models = {"onnx-fp32": str(fp32)}
    for config, ops in QUANTISED.items():
        if config in spec["configs"]:
            models[config] = str(quantise(fp32, work / config, ops))
    return {"models": models}


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    import numpy as np

    threads = spec["threads"]
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from tskd.preprocess.prompt import box_from_mask, prompt_input

    if spec["config"] == "torch-fp32":
        import torch

        torch.set_num_threads(threads)
        from tskd.teacher.checkpoints import load_pretrained_segmenter
        from tskd.teacher.prompted import BoxPredictor

        model = load_pretrained_segmenter(spec["checkpoint"], input_size=256, num_classes=2)
        predictor = BoxPredictor(model)
    else:
        from tskd.runtime import OnnxBoxPredictor

        predictor = OnnxBoxPredictor(spec["model"], threads=threads)
    encoder_s, prepare_s, decoder_s, predict_s, dice, names = [], [], [], [], [], []
    for index, (name, image, truth) in enumerate(hc18_pairs(Path(spec["hc18"]), spec["images"])):
        if index == 0:
            predictor.set_image(image)  # warm-up: the first call allocates
        start = time.perf_counter()
        prompt_input(image, 256)
        prepare_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        predictor.set_image(image)  # preprocessing + encoder
        encoder_s.append(time.perf_counter() - start - prepare_s[-1])
        box = box_from_mask(truth)
        predictor.predict_logits([box])  # warm-up of this image's decoder call
        start = time.perf_counter()
        predictor.predict_logits([box])
        decoder_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        mask = predictor.predict(box)
        predict_s.append(time.perf_counter() - start)
        dice.append(float(2.0 * (mask & truth).sum() / max(mask.sum() + truth.sum(), 1)))
        names.append(name)
        print(f"  {spec['config']}: {index + 1}/{spec['images']} {name} encoder {encoder_s[-1]:.2f} s, "
              f"Dice {dice[-1]:.3f}", file=sys.stderr, flush=True)
    return {
        "config": spec["config"],
        "images": len(dice),
        "encoder_s_median": float(np.median(encoder_s)),
        "encoder_s_mean": float(np.mean(encoder_s)),
        "preprocess_s_median": float(np.median(prepare_s)),
        "decoder_ms_median": 1000 * float(np.median(decoder_s)),
        "predict_ms_median": 1000 * float(np.median(predict_s)),
        "dice_mean": float(np.mean(dice)),
        "dice_median": float(np.median(dice)),
        "dice_min": float(np.min(dice)),
        "peak_rss_mib": peak_rss_mib(),
        "per_image": [{"image": n, "dice": d, "encoder_s": e} for n, d, e in zip(names, dice, encoder_s)],
    }


def default_checkpoint() -> str:
    from tskd.foundation.resolve import resolve_base

    return str(resolve_base("litemedsam"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="lite_medsam.pth (default: the cached litemedsam weights)")
    parser.add_argument("--images", type=int, default=50, help="HC18 images (default 50)")
    parser.add_argument("--quick", action="store_true", help="5 images instead of --images")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    parser.add_argument("--configs", default=",".join(DEFAULT_CONFIGS),
                        help=f"comma-separated, of {', '.join(CONFIGS)} (default: {', '.join(DEFAULT_CONFIGS)})")
    parser.add_argument("--work", type=Path, default=REPO / ".cache" / "bench-box-model",
                        help="where the exported and quantised graphs are kept")
    parser.add_argument("--hc18", type=Path, default=HC18)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        worker_reply(prepare(spec) if spec.get("prepare") else worker(spec))
        return 0
    if args.quick:
        args.images = 5
    configs = [c for c in args.configs.split(",") if c]
    unknown = sorted(set(configs) - set(CONFIGS))
    if unknown:
        parser.error(f"unknown configurations {unknown}; choose from {', '.join(CONFIGS)}")
    checkpoint = args.checkpoint or default_checkpoint()
    # export and quantise in a process of their own: a worker forked from a parent that once held
    # torch and the model would inherit that parent's peak RSS (see peak_rss.py)
    prepared = run_worker(Path(__file__), {"prepare": True, "checkpoint": checkpoint, "work": str(args.work),
                                           "configs": configs, "threads": args.threads}, timeout_s=1800)
    if "error" in prepared:
        print(f"could not export the box model: {prepared['error']}", file=sys.stderr)
        return 1
    models = {k: Path(v) for k, v in prepared["models"].items()}
    started = now()
    load_before = os.getloadavg()
    rows = []
    for config in configs:
        spec = {"config": config, "threads": args.threads, "images": args.images, "hc18": str(args.hc18),
                "checkpoint": checkpoint, "model": str(models.get(config, ""))}
        print(f"{config} ...", file=sys.stderr, flush=True)
        row = run_worker(Path(__file__), spec, timeout_s=3600)
        row.setdefault("config", config)
        if config in models:
            row["encoder_bytes"] = (models[config] / "box_encoder.onnx").stat().st_size
        rows.append(row)
    results = {
        "benchmark": "box_model",
        "started": started,
        "finished": now(),
        "machine": machine_info(threads=args.threads),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "images": args.images,
        "quick": bool(args.quick),
        "rows": rows,
        "bf16": "not measured: onnxruntime's CPU provider has no bf16 kernels for MatMul, Add or Conv",
    }
    write_results(results, args.out)
    print(f"LiteMedSAM box-to-mask, {args.images} HC18 images, {args.threads} threads; load "
          f"{results['load_average_before']} -> {results['load_average_after']}")
    header = f"{'config':<16}{'encoder s':>10}{'prep ms':>12}{'decoder ms':>11}{'predict ms':>11}" \
             f"{'Dice mean':>10}{'min':>7}{'peak RSS MiB':>13}{'encoder MB':>11}"
    print(header)
    for row in rows:
        if "error" in row:
            print(f"{row['config']:<16}error: {row['error']}")
            continue
        size = f"{row['encoder_bytes'] / 1e6:.1f}" if "encoder_bytes" in row else "-"
        print(f"{row['config']:<16}{row['encoder_s_median']:>10.2f}{row['preprocess_s_median'] * 1000:>12.0f}"
              f"{row['decoder_ms_median']:>11.1f}{row['predict_ms_median']:>11.1f}{row['dice_mean']:>10.3f}"
              f"{row['dice_min']:>7.3f}{row['peak_rss_mib']:>13.0f}{size:>11}")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
