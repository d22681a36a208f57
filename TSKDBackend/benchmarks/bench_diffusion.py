"""Diffusion cost: images per second for training the denoising U-Net and for sampling from it.

At 64, 128 and 256 pixels with the U-Net sizes of the presets: 64 px is ``cpu-small``'s model,
128 px ``gpu``'s, 256 px ``gpu``'s widths with ``image_size`` overridden (all read through
:func:`tskd.runconfig.resolve_config`). Untrained weights: speed does not depend on them.

* training: DDPM noise-prediction steps of :class:`tskd.synthesis.task.DiffusionTask` on the
  ``build_unet`` model, run by the project's engine (:class:`tskd.engine.Trainer`: AdamW, gradient
  clipping, bf16/fp16 mixed precision on a GPU, full precision on a CPU) at batch ``B``; warm-up
  steps, then the median time between the engine's step callbacks; images/s = ``B`` / seconds;
* sampling: :func:`tskd.synthesis.sampler.generate` with DDIM and the preset's number of steps
  (25), ``B`` images per batch, full precision as the pipeline samples; images/s = ``B`` / seconds
  per batch. With ``--sampling-steps N`` (or ``--quick`` on a CPU: 5) fewer steps are run and the
  time is scaled to the preset's steps (each DDIM step costs the same: one U-Net pass); the JSON
  says so (``measured_steps``, ``extrapolated``).

``B`` on a CPU: 16 at 64 px, 4 at 128, 2 at 256 (``--quick``: 8, 2, 1); on CUDA the preset's
training batch for training and its ``sample_batch_size`` for sampling. ``--batch`` sets both.

Usage (from the repository root)::

    PYTHONPATH=TSKDBackend/src python TSKDBackend/benchmarks/bench_diffusion.py [--quick] [--threads N]

Writes ``TSKDBackend/benchmarks/results/diffusion.json`` and prints a table. ``--smoke`` runs the
``tiny`` preset's U-Net at 32 pixels for one timed step (tests use it; its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

# benchlib first: it puts TSKDBackend/src on the path for a checkout that did not install the package
from benchlib import RESULTS_DIR, machine_info, machine_line, now, summarise, timed, write_results
from tskd.engine import Trainer
from tskd.runconfig import resolve_config
from tskd.runtime import physical_cores
from tskd.synthesis.config import DiffusionConfig
from tskd.synthesis.model import build_diffusion_model
from tskd.synthesis.sampler import generate
from tskd.synthesis.task import DiffusionTask

RESULTS = RESULTS_DIR / "diffusion.json"
PRESETS = {64: "cpu-small", 128: "gpu", 256: "gpu"}  # whose U-Net each size uses
SMOKE_PRESET, SMOKE_SIZE = "tiny", 32
CPU_BATCH = {64: 16, 128: 4, 256: 2}
CPU_BATCH_QUICK = {64: 8, 128: 2, 256: 1}
# (warm-up, timed) training steps and timed sampling batches
TRAIN_STEPS = {"cpu": (2, 5), "cuda": (5, 20)}
TRAIN_STEPS_QUICK = {"cpu": (1, 2), "cuda": (3, 10)}
SAMPLE_REPEATS = {"cpu": 1, "cuda": 3}
QUICK_CPU_SAMPLING_STEPS = 5
POOL = 8  # distinct images in the in-memory training pool


def diffusion_config(preset: str, size: int) -> DiffusionConfig:
    """The preset's ``synthesis`` section with ``image_size`` set to ``size``."""
    return resolve_config(preset=preset, overrides={"synthesis": {"image_size": size}}).synthesis


def _pool(size: int) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [{"image": torch.randn((1, size, size), generator=generator)} for _ in range(POOL)]


def _synchronise(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def bench_training(config: DiffusionConfig, device: str, batch: int, warmup: int, repeats: int) -> dict[str, Any]:
    """Images per second of the engine's training steps.

    The first ``warmup`` steps (at least 1: step 1 includes the set-up) are not timed.
    """
    if warmup < 1:
        raise ValueError(f"warmup must be at least 1 (step 1 includes the set-up), got {warmup}")
    torch.manual_seed(0)
    model = build_diffusion_model(config)
    task = DiffusionTask.for_model(model)
    engine = dataclasses.replace(
        config.train, batch_size=batch, grad_accum_steps=1, max_steps=warmup + repeats, warmup_steps=0,
        checkpoint_every=10**9, validate_every=10**9, log_every=10**9, num_workers=0, device=device,
        mixed_precision="auto",
    )
    stamps: list[float] = []
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory(prefix="tskd-bench-diffusion-") as tmp:
        trainer = Trainer(model=model.unet, task=task, train_dataset=_pool(config.image_size), config=engine,
                          out_dir=tmp, stage="synthesis", on_step=lambda step, logs: stamps.append(time.perf_counter()))
        trainer.fit()
    steps = [b - a for a, b in zip(stamps, stamps[1:])][-repeats:]
    timing = summarise(steps, warmup)
    result = {"batch": batch, "seconds_per_step": timing["median_s"], "step_times_s": steps,
              "images_per_s": batch / timing["median_s"], "warmup_steps": warmup, "timed_steps": len(steps),
              "mixed_precision": "no" if device == "cpu" else
              ("bf16" if torch.cuda.is_bf16_supported() else "fp16")}
    if device == "cuda":
        result["peak_gpu_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def bench_sampling(config: DiffusionConfig, device: str, batch: int, repeats: int,
                   measured_steps: int | None) -> dict[str, Any]:
    """Images per second of DDIM sampling with the preset's steps (scaled from ``measured_steps`` if given)."""
    torch.manual_seed(0)
    model = build_diffusion_model(config)
    steps = config.sampling_steps
    measured = min(measured_steps or steps, steps)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    generate(model, batch, steps=1, sampler="ddim", device=device, batch_size=batch)  # warm-up

    def run() -> None:
        generate(model, batch, steps=measured, sampler="ddim", device=device, batch_size=batch)
        _synchronise(device)

    timing = timed(run, repeats, warmup=0)
    seconds = timing["median_s"] * steps / measured
    result = {"batch": batch, "sampler": "ddim", "steps": steps, "measured_steps": measured,
              "extrapolated": measured != steps, "seconds_per_batch": seconds, "images_per_s": batch / seconds,
              "seconds_per_denoising_step": timing["median_s"] / measured, "times_s": timing["times_s"],
              "precision": "fp32"}
    if device == "cuda":
        result["peak_gpu_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps; on a CPU sampling is timed over 5 "
                        "steps and scaled to the preset's steps (numbers are rougher)")
    parser.add_argument("--smoke", action="store_true", help="the tiny preset's U-Net at 32 px, one timed step (tests)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: physical cores)")
    parser.add_argument("--sizes", type=int, nargs="+", default=None, choices=sorted(PRESETS),
                        help="image sizes (default: 64 128 256)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                        help="auto: the CPU, and CUDA too when available")
    parser.add_argument("--batch", type=int, default=None, help="B for training and sampling at every size")
    parser.add_argument("--sampling-steps", type=int, default=None,
                        help="time sampling over this many DDIM steps and scale to the preset's steps")
    parser.add_argument("--out", type=Path, default=RESULTS, help=f"JSON file to write (default: {RESULTS})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    threads = args.threads or physical_cores()
    torch.set_num_threads(threads)
    cuda = torch.cuda.is_available()
    devices = {"auto": ["cpu"] + (["cuda"] if cuda else []), "cpu": ["cpu"], "cuda": ["cuda"]}[args.device]
    if "cuda" in devices and not cuda:
        print("--device cuda: torch sees no CUDA GPU", file=sys.stderr)
        return 1
    sizes = [SMOKE_SIZE] if args.smoke else (args.sizes or sorted(PRESETS))
    runs = []
    for device in devices:
        for size in sizes:
            preset = SMOKE_PRESET if args.smoke else PRESETS[size]
            config = diffusion_config(preset, size)
            if args.smoke:
                train_batch = sample_batch = args.batch or 2
                (warmup, repeats), sample_repeats, measured = (1, 1), 1, args.sampling_steps
            else:
                if device == "cpu":
                    train_batch = sample_batch = args.batch or (CPU_BATCH_QUICK if args.quick else CPU_BATCH)[size]
                else:
                    train_batch = args.batch or config.train.batch_size
                    sample_batch = args.batch or config.sample_batch_size
                warmup, repeats = (TRAIN_STEPS_QUICK if args.quick else TRAIN_STEPS)[device]
                sample_repeats = SAMPLE_REPEATS[device]
                measured = args.sampling_steps or (QUICK_CPU_SAMPLING_STEPS if args.quick and device == "cpu" else None)
            parameters = sum(p.numel() for p in build_diffusion_model(config).unet.parameters())
            run: dict[str, Any] = {"device": device, "image_size": size, "preset": preset, "parameters": parameters,
                                   "block_out_channels": list(config.block_out_channels),
                                   "layers_per_block": config.layers_per_block,
                                   "attention_levels": list(config.attention_levels)}
            print(f"{device} {size} px ({preset} U-Net): training at batch {train_batch}...", file=sys.stderr,
                  flush=True)
            run["train"] = bench_training(config, device, train_batch, warmup, repeats)
            print(f"{device} {size} px: sampling {sample_batch} images...", file=sys.stderr, flush=True)
            run["sample"] = bench_sampling(config, device, sample_batch, sample_repeats, measured)
            runs.append(run)
    gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if "cuda" in devices else []
    results = {
        "benchmark": "diffusion",
        "created": now(),
        "machine": machine_info(threads, gpus),
        "command": " ".join(["bench_diffusion.py", *(argv if argv is not None else sys.argv[1:])]),
        "quick": args.quick,
        "smoke": args.smoke,
        "runs": runs,
    }
    write_results(results, args.out)
    print(format_table(results))
    print(f"wrote {args.out}")
    return 0


def format_table(results: dict[str, Any]) -> str:
    lines = [machine_line(results),
             "",
             f"{'device':<6} {'size':>4} {'U-Net':<10} {'params':>11} {'train B':>7} {'s/step':>8} {'img/s':>8} "
             f"{'sample B':>8} {'steps':>5} {'s/batch':>8} {'img/s':>8}"]
    for run in results["runs"]:
        train, sample = run["train"], run["sample"]
        steps = f"{sample['steps']}" + ("*" if sample["extrapolated"] else "")
        lines.append(f"{run['device']:<6} {run['image_size']:>4} {run['preset']:<10} {run['parameters']:>11,} "
                     f"{train['batch']:>7} {train['seconds_per_step']:>8.3f} {train['images_per_s']:>8.2f} "
                     f"{sample['batch']:>8} {steps:>5} {sample['seconds_per_batch']:>8.2f} "
                     f"{sample['images_per_s']:>8.3f}")
    if any(run["sample"]["extrapolated"] for run in results["runs"]):
        lines.append("* sampling timed over fewer DDIM steps and scaled to the preset's steps")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
