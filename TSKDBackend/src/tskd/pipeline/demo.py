"""``tskd demo``: the whole pipeline on generated phantoms, end to end, in minutes on a CPU.

Makes a phantom dataset (and held-out test phantoms), checks it, runs every stage, segments the
held-out phantoms with the exported student (as Slicer would) and scores them. Running it again
in the same folder resumes or reuses everything already done.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tskd.config import deep_merge
from tskd.data.check import check_dataset
from tskd.data.phantom import PhantomConfig, write_phantom_dataset
from tskd.errors import ConfigError
from tskd.evaluation.evaluate import evaluate_files
from tskd.inference.predict import predict_files
from tskd.runconfig import PipelineConfig
from tskd.pipeline.run import run_stages
from tskd.progress import ProgressReporter

__all__ = ["run_demo", "format_demo", "foundation_settings", "FOUNDATION_DEMO"]

logger = logging.getLogger(__name__)

#: The test phantoms are drawn with another seed, so they are never seen in training.
TEST_SEED_OFFSET = 1000

#: The settings of a demo with foundation weights (``tskd demo --base``), over the ``tiny`` preset and
#: under the user's own ``--config``. The preset's teacher (its 'tiny' architecture, 64 px, 300 steps at
#: lr 4e-3) suits a small model trained from scratch; a foundation model brings its own architecture,
#: LiteMedSAM's encoder is trained at 256 px only, and its pretrained decoder, on the frozen encoder's
#: cached embeddings, needs fewer and gentler steps: on the demo's phantoms (12 slices) it reached
#: validation Dice 0.966 after 60 steps at lr 1e-3 (cpu-small's rate), 0.249 at the preset's 4e-3.
#: Every synthetic image goes through the encoder too (1-3 s each on two cores): 16 instead of 32.
#: Measured: docs/benchmarks.md, "make demo with LiteMedSAM".
FOUNDATION_DEMO: dict[str, Any] = {
    "teacher": {"architecture": "auto", "foundation_input_size": 256, "foundation_max_steps": 60,
                "train": {"lr": 1.0e-3}},
    "synthesis": {"num_synthetic": 16},
}


def run_demo(
    workdir: str | Path,
    config: PipelineConfig,
    *,
    cases: int = 8,
    unlabelled: int = 2,
    test_cases: int = 4,
    slices: int | None = None,
    progress: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Run the demo in ``workdir`` and return what it did (see :func:`format_demo`).

    Args:
        slices: slices per phantom volume (``None``: :class:`PhantomConfig`'s 32). A foundation
            teacher's encoder sees every slice of the training phantoms once (about 1-3 s each on
            two CPU cores), so a demo with one uses fewer.
    """
    workdir = Path(workdir)
    data = workdir / "data"
    test = workdir / "test"
    phantom = PhantomConfig()
    if slices is not None:
        phantom = PhantomConfig(size=(*phantom.size[:2], int(slices)))
    for folder, count, more, seed in ((data, cases, unlabelled, config.seed),
                                      (test, test_cases, 0, config.seed + TEST_SEED_OFFSET)):
        wanted = {"cases": count, "unlabelled": more, "config": phantom.replace(seed=seed).to_dict()}
        if (folder / "labels.json").is_file():
            _check_phantoms(folder, wanted)
        else:
            write_phantom_dataset(folder, cases=count, unlabelled=more, seed=seed, config=phantom, overwrite=True)
    report = check_dataset(data)
    logger.info("demo: %d labelled and %d unlabelled phantom volumes in %s", report.n_labelled, report.n_unlabelled, data)
    summary = run_stages(data, workdir / "run", config, progress=progress)
    predictions = workdir / "predictions"
    results = predict_files(workdir / "run" / "package", test / "images", predictions)
    failed = [r for r in results if not r.ok]
    if failed:
        raise RuntimeError(f"demo: {len(failed)} test phantoms could not be segmented: {failed[0]}")
    evaluation = evaluate_files(predictions, test / "labels", labels=test / "labels.json", out=workdir / "evaluation")
    return {
        "workdir": str(workdir),
        "dataset": {"path": str(data), "labelled": report.n_labelled, "unlabelled": report.n_unlabelled},
        "run": summary,
        "test": {"path": str(test), "cases": len(evaluation.cases), "summary": evaluation.summary,
                 "predictions": str(predictions), "metrics": str(workdir / "evaluation")},
    }


def foundation_settings(own: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings layer of a demo with foundation weights: :data:`FOUNDATION_DEMO` under ``own``
    (the user's ``--config``, also given to :func:`~tskd.runconfig.resolve_config` as the config file, where
    its own ``teacher.train.max_steps`` becomes the teacher's step count with foundation weights)."""
    return deep_merge(FOUNDATION_DEMO, own or {})


def _check_phantoms(folder: Path, wanted: dict[str, Any]) -> None:
    """Refuse to reuse phantoms made with other settings (another ``--cases`` or ``--slices``):
    the run folder beside them would then train on data that is not what the command asked for."""
    try:
        made = json.loads((folder / "phantom.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # a dataset the demo did not write (or an older demo's): reused as it is
    if not isinstance(made, dict):
        return
    made_config = made.get("config") if isinstance(made.get("config"), dict) else {}
    differs = [f"{key} {made.get(key)} (asked: {wanted[key]})" for key in ("cases", "unlabelled")
               if made.get(key) != wanted[key]]
    # both sides plain JSON values (ConfigBase.to_dict makes tuples lists)
    differs += [f"{key} {made_config[key]} (asked: {value})" for key, value in wanted["config"].items()
                if key in made_config and made_config[key] != value]
    if differs:
        raise ConfigError(
            f"{folder} holds demo phantoms made with other settings ({'; '.join(differs)}); use another "
            f"--workdir, or delete {folder.parent} to start again"
        )


def format_demo(result: dict[str, Any]) -> str:
    """The demo's closing table: what it did and where the outputs are."""
    from tskd.pipeline.run import format_summary

    test = result["test"]
    summary = test["summary"]
    lines = [
        format_summary(result["run"]),
        "",
        f"Held-out test phantoms ({test['cases']} volumes never seen in training), exported student:",
    ]
    for value, entry in summary["per_class"].items():
        lines.append(f"  {entry['name']:<12} Dice {entry['dice']:.3f}   HD95 {entry['hd95_mm']:.2f} mm")
    lines += [
        f"  {'mean':<12} Dice {summary['mean_dice']:.3f}",
        "",
        f"training data      {result['dataset']['path']}",
        f"student package    {result['run']['stages'].get('package', {}).get('folder', 'n/a')}  (load it in Slicer)",
        f"report             {result['run']['stages'].get('report', {}).get('folder', 'n/a')}",
        f"test predictions   {test['predictions']}",
        f"test metrics       {test['metrics']}",
    ]
    return "\n".join(lines)
