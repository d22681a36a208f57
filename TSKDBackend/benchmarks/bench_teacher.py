"""Teacher cost: SAM ViT-B fine-tuned with LoRA, per training step and per inference, with peak memory.

The real training path with random weights (no checkpoint is needed: speed and memory do not
depend on the values): ``build_sam("vit_b")`` wrapped in a ``SamSegmenter`` as if loaded from a
foundation checkpoint, LoRA rank 4 on ``qkv`` (:func:`tskd.teacher.lora.apply_lora`), the mask
decoder trainable, the loss of :class:`tskd.teacher.task.TeacherTask`, trained by the project's
engine (:class:`tskd.engine.Trainer`: AdamW, gradient clipping, bf16/fp16 mixed precision on a
GPU, full precision on a CPU). Samples come from a small in-memory pool (no augmentation or disk
reads are timed).

Measured at inputs 256 and 1024, on the CPU and on CUDA when available:

* seconds per training step at batch 1 and at the preset's batch (``standard`` on the CPU,
  ``gpu`` on CUDA; skipped at 1024 on the CPU, where it takes minutes and tens of GiB per step,
  unless ``--cpu-preset-batch-1024``): the first steps are warm-up, then the median of ``N``
  (the time between the engine's step callbacks);
* seconds per inference at batch 1 (:func:`tskd.teacher.inference.teacher_logits`, full precision,
  as the pipeline runs it);
* peak memory: each configuration runs in its own fresh process; CPU: its peak RSS
  (``getrusage``, which includes the ~0.5 GiB of the imported libraries); GPU:
  ``torch.cuda.max_memory_allocated``;
* trainable parameters and their share of the image encoder (``trainable_parameter_report``),
  also for ViT-L and ViT-H, built on the meta device (no memory, no timing).

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_teacher.py [--quick] [--threads N]

Writes ``TSKDBackend/benchmarks/results/teacher.json`` and prints a table. ``--smoke`` runs the
``tiny`` architecture at 64 pixels for one timed step (tests use it; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchlib import (RESULTS_DIR, machine_info, machine_line, now, peak_rss_mib, run_worker, summarise, timed,
                      worker_reply, write_results)

RESULTS = RESULTS_DIR / "teacher.json"
CLASSES = 3
POOL = 4  # distinct samples in the in-memory training pool
META_ARCHITECTURES = ("vit_b", "vit_l", "vit_h")
# (warm-up, timed) steps / calls per input size and device; --quick and --smoke shorten them
TRAIN_STEPS = {"cpu": {256: (2, 5), 1024: (1, 3)}, "cuda": {256: (3, 10), 1024: (2, 5)}}
TRAIN_STEPS_QUICK = {"cpu": {256: (1, 2), 1024: (1, 1)}, "cuda": {256: (2, 5), 1024: (1, 3)}}
INFER_CALLS = {"cpu": {256: (2, 10), 1024: (1, 3)}, "cuda": {256: (5, 20), 1024: (3, 10)}}
INFER_CALLS_QUICK = {"cpu": {256: (1, 3), 1024: (1, 1)}, "cuda": {256: (3, 10), 1024: (2, 5)}}
PRESET = {"cpu": "standard", "cuda": "gpu"}  # whose teacher batch size is the "preset batch"


# --------------------------------------------------------------------------------------- worker
def lora_teacher(architecture: str, input_size: int, device: str = "cpu"):
    """A segmenter of ``architecture`` with random weights standing in for a foundation checkpoint,
    LoRA rank 4 on ``qkv`` and the mask decoder trainable (the teacher stage's policy)."""
    from tskd.teacher import BaseCheckpoint, LoraConfig, SamSegmenter, apply_lora, build_sam

    sam = build_sam(architecture, input_size=input_size, num_classes=CLASSES, device=device)
    base = BaseCheckpoint(path="random weights (benchmark)", sha256="", size=0, architecture=architecture,
                          layout="hf", native_input_size=1024)
    model = SamSegmenter(sam=sam, num_classes=CLASSES, architecture=architecture, has_foundation_weights=True,
                         base=base)
    return apply_lora(model, LoraConfig(rank=4, alpha=4.0, targets=("qkv",)))


def _pool(input_size: int) -> list[dict[str, Any]]:
    """A few samples with a disc and a square of two foreground classes (the loss sees every class)."""
    import torch

    generator = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.arange(input_size), torch.arange(input_size), indexing="ij")
    samples = []
    for index in range(POOL):
        centre = input_size * (0.3 + 0.1 * index)
        label = ((yy - centre) ** 2 + (xx - centre) ** 2 < (input_size / 6) ** 2).long()
        label[input_size // 8: input_size // 4, input_size // 2: input_size * 3 // 4] = 2
        image = label.float()[None] + 0.3 * torch.randn((1, input_size, input_size), generator=generator)
        samples.append({"image": image, "label": label})
    return samples


def _gpu_memory(device: str) -> dict[str, Any]:
    import torch

    if device != "cuda":
        return {}
    return {"peak_gpu_allocated_mib": torch.cuda.max_memory_allocated() / 2**20,
            "peak_gpu_reserved_mib": torch.cuda.max_memory_reserved() / 2**20,
            "gpu": torch.cuda.get_device_name()}


def worker_train(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds per optimiser step of the engine, peak memory."""
    import torch

    from tskd.engine import Trainer
    from tskd.runconfig import resolve_config
    from tskd.teacher import TeacherTask, trainable_parameter_report

    device, size, batch = spec["device"], spec["input_size"], spec["batch"]
    warmup, repeats = spec["warmup"], spec["repeats"]
    torch.manual_seed(0)
    model = lora_teacher(spec["architecture"], size)
    config = resolve_config(preset=spec["preset"]).teacher
    engine = dataclasses.replace(
        config.train, batch_size=batch, grad_accum_steps=1, max_steps=warmup + repeats, warmup_steps=0,
        checkpoint_every=10**9, validate_every=10**9, log_every=10**9, num_workers=0, device=device,
        mixed_precision="auto",
    )
    task = TeacherTask.from_config(config, num_classes=CLASSES)
    stamps: list[float] = []

    def on_step(step: int, logs: dict[str, float]) -> None:  # after the loss was read back: synchronised
        stamps.append(time.perf_counter())

    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="tskd-bench-teacher-") as tmp:
        trainer = Trainer(model=model, task=task, train_dataset=_pool(size), config=engine, out_dir=tmp,
                          stage="teacher", on_step=on_step)
        trainer.fit()
    steps = [b - a for a, b in zip(stamps, stamps[1:])][-repeats:]  # step 1 (set-up included) is never timed
    timing = summarise(steps, warmup)
    median = timing["median_s"]
    precision = "no" if device == "cpu" else ("bf16" if torch.cuda.is_bf16_supported() else "fp16")
    return {
        "seconds_per_step": median, "min_seconds_per_step": timing["min_s"], "step_times_s": steps,
        "images_per_s": batch / median, "warmup_steps": warmup, "timed_steps": len(steps),
        "mixed_precision": precision, "peak_rss_mib": peak_rss_mib(), **_gpu_memory(device),
        "parameters": trainable_parameter_report(model),
    }


def worker_infer(spec: dict[str, Any]) -> dict[str, Any]:
    """Seconds per batch-1 inference (full precision, no gradients), peak memory."""
    import torch

    from tskd.teacher.inference import teacher_logits

    device, size = spec["device"], spec["input_size"]
    torch.manual_seed(0)
    model = lora_teacher(spec["architecture"], size).to(device).eval()
    x = torch.randn(1, 1, size, size, device=device)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()

    def run() -> None:
        teacher_logits(model, x)
        if device == "cuda":
            torch.cuda.synchronize()

    timing = timed(run, spec["repeats"], spec["warmup"])
    return {"seconds_per_image": timing["median_s"], "min_seconds_per_image": timing["min_s"],
            "times_s": timing["times_s"], "warmup": timing["warmup"], "repeats": timing["repeats"],
            "precision": "fp32", "peak_rss_mib": peak_rss_mib(), **_gpu_memory(device)}


def worker_probe(spec: dict[str, Any]) -> dict[str, Any]:
    """CUDA availability, GPU names, and parameter counts of the foundation sizes on the meta device."""
    import torch

    from tskd.teacher import trainable_parameter_report

    counts = {}
    for architecture in spec["meta_architectures"]:
        for size in spec["sizes"]:
            model = lora_teacher(architecture, size, device="meta")
            counts[f"{architecture}_{size}"] = {"architecture": architecture, "input_size": size,
                                                **trainable_parameter_report(model)}
    cuda = torch.cuda.is_available()
    return {"cuda": cuda, "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if cuda else [], "parameters": counts}


def worker_main(spec: dict[str, Any]) -> None:
    import torch

    logging.basicConfig(level=logging.WARNING)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    job = {"train": worker_train, "infer": worker_infer, "probe": worker_probe}[spec["kind"]]
    try:
        result = job(spec)
    except Exception as exc:  # reported in the results (e.g. out of GPU memory), not fatal to the benchmark
        result = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
        if spec["kind"] != "probe":
            result["peak_rss_mib"] = peak_rss_mib()
    worker_reply({**spec, **result})


# --------------------------------------------------------------------------------------- parent
def plan(args: argparse.Namespace, devices: list[str]) -> list[dict[str, Any]]:
    """The configurations to run, each in its own process."""
    from tskd.config import load_preset  # YAML only: cheap

    jobs: list[dict[str, Any]] = []
    for device in devices:
        preset = PRESET[device]
        preset_batch = int(load_preset(preset)["teacher"]["train"]["batch_size"])
        for size in args.sizes:
            key = 256 if size <= 512 else 1024
            if args.smoke:
                train_steps, infer_calls = (1, 1), (0, 1)
            elif args.quick:
                train_steps, infer_calls = TRAIN_STEPS_QUICK[device][key], INFER_CALLS_QUICK[device][key]
            else:
                train_steps, infer_calls = TRAIN_STEPS[device][key], INFER_CALLS[device][key]
            batches = [2] if args.smoke else sorted({1, preset_batch})
            for batch in batches:
                job = {"kind": "train", "device": device, "architecture": args.architecture, "input_size": size,
                       "batch": batch, "preset": preset, "warmup": train_steps[0], "repeats": train_steps[1],
                       "threads": args.threads}
                if device == "cpu" and size > 512 and batch > 1 and not (args.cpu_preset_batch_1024 or args.smoke):
                    job["skipped"] = ("batch > 1 above 512 px on a CPU takes minutes and tens of GiB per step; "
                                      "--cpu-preset-batch-1024 runs it")
                jobs.append(job)
            jobs.append({"kind": "infer", "device": device, "architecture": args.architecture, "input_size": size,
                         "batch": 1, "warmup": infer_calls[0], "repeats": infer_calls[1], "threads": args.threads})
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and calls (numbers are rougher)")
    parser.add_argument("--smoke", action="store_true", help="tiny architecture at 64 px, one timed step (tests)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: physical cores)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, help="input sizes (default: 256 1024)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, and CUDA too when available")
    parser.add_argument("--cpu-preset-batch-1024", action="store_true",
                        help="also train at the preset's batch above 512 px on the CPU (slow, needs a lot of RAM)")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file to write (default: {RESULTS})")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return 0

    from tskd.runtime import physical_cores

    args.threads = args.threads or physical_cores()
    args.architecture = "tiny" if args.smoke else "vit_b"
    args.sizes = args.sizes or ([64] if args.smoke else [256, 1024])
    script = Path(__file__).resolve()
    print("probing CUDA and counting parameters on the meta device...", file=sys.stderr, flush=True)
    probe = run_worker(script, {"kind": "probe", "meta_architectures": list(META_ARCHITECTURES),
                                "sizes": sorted({256, 1024} | (set() if args.smoke else set(args.sizes)))})
    if "error" in probe:
        print(f"probe failed: {probe['error']}", file=sys.stderr)
        return 1
    devices = {"auto": ["cpu"] + (["cuda"] if probe["cuda"] else []), "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    if "cuda" in devices and not probe["cuda"]:
        print("--device cuda: torch sees no CUDA GPU", file=sys.stderr)
        return 1
    runs = []
    for job in plan(args, devices):
        label = f"{job['kind']} {job['device']} {job['input_size']} px batch {job['batch']}"
        if "skipped" in job:
            print(f"{label}: skipped", file=sys.stderr, flush=True)
            runs.append(job)
            continue
        print(f"{label}...", file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = run_worker(script, job)
        result["wall_s"] = time.perf_counter() - start
        if "error" in result:
            print(f"{label}: {result['error']}", file=sys.stderr, flush=True)
        runs.append({**job, **result})
    results = {
        "benchmark": "teacher",
        "created": now(),
        "machine": machine_info(args.threads, probe["gpus"] if "cuda" in devices else []),
        "command": " ".join(["bench_teacher.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "smoke": args.smoke,
        "architecture": args.architecture,
        "num_classes": CLASSES,
        "lora": {"rank": 4, "alpha": 4.0, "targets": ["qkv"]},
        "runs": runs,
        "parameters": probe["parameters"],
    }
    write_results(results, args.out)
    print(format_table(results))
    print(f"wrote {args.out}")
    return 0


def _mib(value: float | None) -> str:
    return f"{value:,.0f}" if value is not None else "-"


def format_table(results: dict[str, Any]) -> str:
    lines = [machine_line(results),
             "",
             f"SAM {results['architecture']} + LoRA rank 4 on qkv, {results['num_classes']} classes",
             f"{'what':<6} {'device':<6} {'input':>5} {'batch':>5} {'s/step or s/image':>17} {'images/s':>9} "
             f"{'peak RSS MiB':>12} {'peak GPU MiB':>12}  timed"]
    for run in results["runs"]:
        head = f"{run['kind']:<6} {run['device']:<6} {run['input_size']:>5} {run['batch']:>5}"
        if "skipped" in run or "error" in run:
            lines.append(f"{head} {'skipped' if 'skipped' in run else 'error: ' + run['error']}")
            continue
        seconds = run["seconds_per_step"] if run["kind"] == "train" else run["seconds_per_image"]
        count = run["timed_steps"] if run["kind"] == "train" else run["repeats"]
        lines.append(f"{head} {seconds:>17.3f} {run['batch'] / seconds:>9.2f} {_mib(run['peak_rss_mib']):>12} "
                     f"{_mib(run.get('peak_gpu_allocated_mib')):>12}  median of {count}")
    lines += ["", f"{'trainable parameters':<20} {'input':>5} {'trainable':>11} {'total':>13} "
                  f"{'encoder trainable':>17} {'of encoder':>10}"]
    for name, p in results["parameters"].items():
        lines.append(f"{p['architecture']:<20} {p['input_size']:>5} {p['trainable']:>11,} {p['total']:>13,} "
                     f"{p['encoder_trainable']:>17,} {p['encoder_trainable_percent']:>9.3f}%")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
