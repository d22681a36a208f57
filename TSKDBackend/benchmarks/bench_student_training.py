"""Student training, variant by variant, on real labelled data: what makes the students learn.

The evidence behind the student's head, its planned depth and the soft-Dice distillation term
(docs/benchmarks.md, "Student training"). One benchmark split (``tskd benchmark``'s: a held-out
test set of subjects, then the run split of the rest), one prepared data stage, then each variant
trained with several seeds through the project's own engine and scored like every package, on the
held-out test volumes at full resolution:

* ``labelled_only/monai``: the labelled-only student as tskd 0.1 built it (MONAI's UNet with
  ``out_channels = K``: the top layer instance-normalises the class maps), the benchmark's budget;
* ``labelled_only/head``: the same with the current student (1x1 head, depth from the input size);
* ``plain_monai``: the plain supervised loop a user could write in sixty lines (MONAI ``UNet`` with
  three stride-2 levels, 16-128 channels, one residual unit, instance norm, ``DiceCELoss``, AdamW at
  2e-3 with a one-cycle schedule, 600 steps of batch 16, random flips only) on the same slices: the
  outside reference the project's students must beat;
* ``distill/kl`` and ``distill/kl+dice`` (with ``--distill``): the current student distilled from
  the run's teacher on a transfer set of the real training slices (the teacher trained once,
  synthesis off), with the logit KD alone (``w_kd_dice: 0``, tskd 0.1's loss) and with the soft Dice
  beside it; scored after distillation alone, to isolate the distillation loss.

Usage (from the repository root)::

    .venv/bin/python TSKDBackend/benchmarks/bench_student_training.py --data ../shared/data/hippocampus \\
        --labelled 10 --config TSKDBackend/benchmarks/hc18_cpu2c.yaml --seeds 0,1,2 --distill

Writes ``TSKDBackend/benchmarks/results/student_training.json`` (``--out`` elsewhere) and prints a
table per variant and seed and a summary (mean, minimum over seeds). The work folder (``--work``,
default ``bench-student-training/``) keeps every trained variant, so a second run only scores.
``--quick``: seed 0 only and at most 100 steps per stage (for a smoke test; the numbers mean little).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from benchlib import RESULTS_DIR, machine_info, machine_line, now, write_results  # also puts src/ on sys.path

import numpy as np
import torch

from tskd.atomic import write_json
from tskd.data.augment import build_augmentation
from tskd.data.dataset import load_dataset
from tskd.data.slice_dataset import SliceDataset
from tskd.engine import EngineConfig
from tskd.inference.torch_model import TorchSliceModel
from tskd.log import configure_logging
from tskd.pipeline.comparison.measure import test_metrics
from tskd.pipeline.comparison.split import load_or_make_split, run_split_file
from tskd.runconfig import PipelineConfig, resolve_config
from tskd.pipeline.data_stage import PreparedData, load_prepared_data
from tskd.pipeline.run import run_stages
from tskd.pipeline.run_folder import RunFolder
from tskd.pipeline.stage import StageContext, fit_stage
from tskd.pipeline.student_stage import supervised_budget
from tskd.student import DistillationTask, SupervisedTask, build_student
from tskd.student.storage import load_student
from tskd.data.transfer_set import TransferSetDataset

logger = logging.getLogger("bench_student_training")

SUPERVISED = ("labelled_only/monai", "labelled_only/head", "plain_monai")
DISTILLED = ("distill/kl", "distill/kl+dice")


def _config(args: argparse.Namespace) -> PipelineConfig:
    overrides = {"data": {"max_labelled": args.labelled}, "synthesis": {"enabled": False}}
    if args.subject_pattern:
        overrides["data"]["subject_pattern"] = args.subject_pattern
    return resolve_config(preset=args.preset, config_file=args.config, overrides=overrides, base="none",
                          max_steps=100 if args.quick else None)


def _prepare(args: argparse.Namespace, config: PipelineConfig, work: Path) -> tuple[Any, dict, RunFolder]:
    dataset = load_dataset(args.data, subject_pattern=config.data.subject_pattern)
    split = load_or_make_split(work / "split.json", dataset, config, test_fraction=args.test_fraction)
    run = RunFolder(work / "run")
    run.root.mkdir(parents=True, exist_ok=True)
    if not run.split.is_file():
        write_json(run.split, run_split_file(split, config))
    stages = ("data", "teacher", "synthesis") if args.distill else ("data",)
    run_stages(args.data, run.root, config, stages=stages)
    return dataset, split, run


def _supervised(layout: str) -> Callable[..., torch.nn.Module]:
    def train(folder: Path, data: PreparedData, config: PipelineConfig, seed: int) -> torch.nn.Module:
        torch.manual_seed(seed)
        student = build_student(config.distill.student, num_classes=data.num_classes, input_size=data.input_size,
                                layout=layout)
        fit_stage(folder=folder, stage="labelled_only", model=student,
                  task=SupervisedTask(num_classes=data.num_classes, val_data=_val(data)),
                  dataset=SliceDataset(data.prepared, data.train_labelled,
                                       augment=build_augmentation(config.data.augment), seed=seed),
                  train=EngineConfig.from_dict({**supervised_budget(config).to_dict(), "seed": seed}),
                  fingerprint={"variant": layout, "seed": seed}, context=StageContext())
        return student
    return train


def _distilled(w_kd_dice: float) -> Callable[..., torch.nn.Module]:
    def train(folder: Path, data: PreparedData, config: PipelineConfig, seed: int, run: RunFolder) -> torch.nn.Module:
        cfg = dataclasses.replace(config.distill, w_kd_dice=w_kd_dice)
        torch.manual_seed(seed)
        student = build_student(cfg.student, num_classes=data.num_classes, input_size=data.input_size)
        fit_stage(folder=folder, stage="distill", model=student,
                  task=DistillationTask(config=cfg, num_classes=data.num_classes, val_data=_val(data)),
                  dataset=TransferSetDataset(run.transfer_set),
                  train=EngineConfig.from_dict({**cfg.train.to_dict(), "seed": seed}),
                  fingerprint={"variant": f"w_kd_dice={w_kd_dice}", "seed": seed}, context=StageContext())
        return student
    return train


def _plain_monai(folder: Path, data: PreparedData, config: PipelineConfig, seed: int) -> torch.nn.Module:
    """The issue's plain loop, written as a user would (no tskd training code); saved as weights."""
    from monai.losses import DiceCELoss
    from monai.networks.nets import UNet

    path = folder / "plain_monai.pt"
    torch.manual_seed(seed)
    net = UNet(2, 1, data.num_classes, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1, norm="instance")
    if path.is_file():
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.eval()
    steps, batch = (100 if config.distill.train.max_steps <= 100 else 600), 16
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=2e-3, total_steps=steps)
    images = np.asarray(data.prepared.images[data.train_labelled], dtype=np.float32)
    labels = np.asarray(data.prepared.labels[data.train_labelled], dtype=np.int64)
    rng = np.random.default_rng(seed)
    net.train()
    for _ in range(steps):
        pick = rng.integers(0, len(images), batch)
        x, y = torch.from_numpy(images[pick][:, None].copy()), torch.from_numpy(labels[pick][:, None].copy())
        for axis in (2, 3):  # random flips, per sample
            flip = torch.from_numpy(rng.random(batch) < 0.5)
            x[flip], y[flip] = x[flip].flip(axis), y[flip].flip(axis)
        loss = loss_fn(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return net.eval()


def _val(data: PreparedData) -> SliceDataset | None:
    return SliceDataset(data.prepared, data.val) if data.val.size else None


def _train_or_load(variant: str, folder: Path, data: PreparedData, config: PipelineConfig, seed: int,
                   run: RunFolder) -> torch.nn.Module:
    if variant == "plain_monai":
        return _plain_monai(folder, data, config, seed)
    if (folder / "stage.json").is_file():
        return load_student(folder / "student.pt")
    if variant.startswith("labelled_only/"):
        return _supervised(variant.split("/", 1)[1])(folder, data, config, seed)
    return _distilled(0.0 if variant == "distill/kl" else 1.0)(folder, data, config, seed, run)


def _score(net: torch.nn.Module, data: PreparedData, dataset: Any, test_ids: list[str]) -> dict[str, Any]:
    model = TorchSliceModel(net.eval(), input_size=data.input_size, label_values=data.labels.values,
                            normalization=data.normalization, slice_axis=data.slice_axis)
    test = test_metrics(model, dataset, test_ids)
    return {"test_dice": test["mean_dice"],
            "per_class": {str(k): v["dice"] for k, v in test["per_class"].items()}}


def _summary(rows: list[dict[str, Any]], variants: list[str]) -> list[dict[str, Any]]:
    out = []
    for variant in variants:
        dice = [r["test_dice"] for r in rows if r["variant"] == variant]
        if not dice:
            continue
        worst = min((r for r in rows if r["variant"] == variant), key=lambda r: r["test_dice"])
        out.append({"variant": variant, "seeds": len(dice), "mean": statistics.fmean(dice), "min": min(dice),
                    "worst_per_class": worst["per_class"]})
    return out


def _print(results: dict[str, Any]) -> None:
    print(f"\n{machine_line(results)}\n{results['data']}: {results['split']}")
    print("| variant | seed | test Dice | per class | seconds (train or load) |\n| --- | --- | --- | --- | --- |")
    for r in results["rows"]:
        per = ", ".join(f"{k}: {v:.3f}" for k, v in r["per_class"].items())
        print(f"| {r['variant']} | {r['seed']} | {r['test_dice']:.3f} | {per} | {r['seconds']:.0f} |")
    print("\n| variant | seeds | mean test Dice | min | worst seed per class |\n| --- | --- | --- | --- | --- |")
    for s in results["summary"]:
        per = ", ".join(f"{k}: {v:.3f}" for k, v in s["worst_per_class"].items())
        print(f"| {s['variant']} | {s['seeds']} | {s['mean']:.3f} | {s['min']:.3f} | {per} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="../shared/data/hippocampus")
    parser.add_argument("--labelled", type=int, default=10)
    parser.add_argument("--preset", default="cpu-small")
    parser.add_argument("--config", default=None, help="YAML on top of the preset (e.g. benchmarks/hc18_cpu2c.yaml)")
    parser.add_argument("--subject-pattern", default=None)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(SUPERVISED))
    parser.add_argument("--distill", action="store_true", help="also train the teacher and the distillation variants")
    parser.add_argument("--work", type=Path, default=Path("bench-student-training"))
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "student_training.json")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    configure_logging(verbosity=0)
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [v for v in args.variants.split(",") if v] + (list(DISTILLED) if args.distill else [])
    unknown = sorted(set(variants) - set(SUPERVISED) - set(DISTILLED))
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; known: {', '.join(SUPERVISED + DISTILLED)}")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    config = _config(args)
    dataset, split, run = _prepare(args, config, args.work)
    data = load_prepared_data(run)
    rows = []
    for variant in variants:
        for seed in seeds:
            folder = args.work / "variants" / variant.replace("/", "_") / f"seed{seed}"
            start = time.perf_counter()
            net = _train_or_load(variant, folder, data, config, seed, run)
            seconds = time.perf_counter() - start
            row = {"variant": variant, "seed": seed, "seconds": seconds, **_score(net, data, dataset, split["test"])}
            logger.info("%s seed %d: test Dice %.3f %s", variant, seed, row["test_dice"], row["per_class"])
            rows.append(row)
    results = {"benchmark": "student_training", "created": now(), "command": " ".join(sys.argv),
               "machine": machine_info(threads=torch.get_num_threads()), "data": str(args.data),
               "split": {k: len(v) for k, v in split.items()}, "quick": args.quick, "smoke": False, "seeds": seeds,
               "config": config.to_dict(), "rows": rows, "summary": _summary(rows, variants)}
    _print(results)
    print(f"wrote {write_results(json.loads(json.dumps(results)), args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
