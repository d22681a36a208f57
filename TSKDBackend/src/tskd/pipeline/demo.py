"""``tskd demo``: the whole pipeline on generated phantoms, end to end, in minutes on a CPU.

Makes a phantom dataset (and held-out test phantoms), checks it, runs every stage, segments the
held-out phantoms with the exported student (as Slicer would) and scores them. Running it again
in the same folder resumes or reuses everything already done.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tskd.data.check import check_dataset
from tskd.data.phantom import write_phantom_dataset
from tskd.evaluation.evaluate import evaluate_files
from tskd.inference.predict import predict_files
from tskd.runconfig import PipelineConfig
from tskd.pipeline.run import run_stages
from tskd.progress import ProgressReporter

__all__ = ["run_demo", "format_demo"]

logger = logging.getLogger(__name__)

#: The test phantoms are drawn with another seed, so they are never seen in training.
TEST_SEED_OFFSET = 1000


def run_demo(
    workdir: str | Path,
    config: PipelineConfig,
    *,
    cases: int = 8,
    unlabelled: int = 2,
    test_cases: int = 4,
    progress: ProgressReporter | None = None,
) -> dict[str, Any]:
    """Run the demo in ``workdir`` and return what it did (see :func:`format_demo`)."""
    workdir = Path(workdir)
    data = workdir / "data"
    test = workdir / "test"
    if not (data / "labels.json").is_file():
        write_phantom_dataset(data, cases=cases, unlabelled=unlabelled, seed=config.seed, overwrite=True)
    if not (test / "labels.json").is_file():
        write_phantom_dataset(test, cases=test_cases, seed=config.seed + TEST_SEED_OFFSET, overwrite=True)
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
