"""``tskd benchmark``: every method trained on one split, each exported student scored on held-out
test images, one table.

The methods (:mod:`tskd.pipeline.comparison.methods`) share the split, the prepared slices and, for TS-KD and
its ablation, the fine-tuned teacher (trained once in ``OUT/shared``, hard-linked into their run
folders). Each method's run folder resumes like ``tskd train``; a method whose test result exists
is not run again. A failing method does not stop the others: its error goes into the table.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tskd import __version__
from tskd.atomic import write_json
from tskd.data.dataset import Dataset, load_dataset
from tskd.errors import CancelledError
from tskd.log import add_file_handler
from tskd.pipeline.comparison.folders import BenchmarkFolder, share_stage
from tskd.pipeline.comparison.measure import package_facts, test_metrics, time_per_slice
from tskd.pipeline.comparison.plot import plot_results
from tskd.pipeline.comparison.report import finite_json, write_table_files
from tskd.pipeline.comparison.split import load_or_make_split, run_split_file
from tskd.pipeline.comparison.teacher_reference import TEACHER_ROW, teacher_reference
from tskd.runconfig import PipelineConfig
from tskd.pipeline.comparison.methods import Method, get_method
from tskd.pipeline.run import run_stages
from tskd.pipeline.run_folder import RunFolder, finished_reference_members, read_json
from tskd.progress import ProgressReporter
from tskd.runtime import OnnxSegmenter

__all__ = ["run_benchmark", "TimingSettings", "DEFAULT_TEST_FRACTION"]

logger = logging.getLogger(__name__)

#: Share of the labelled subjects held out as the test set by default.
DEFAULT_TEST_FRACTION = 0.2

_STAGE_FOLDERS = ("teacher", "synthesis", "student/mae", "student/distill", "student/finetune", "student/reference")


@dataclass(frozen=True)
class TimingSettings:
    """How the time per slice is measured (see :func:`tskd.pipeline.comparison.measure.time_per_slice`)."""

    batch_size: int = 16
    repeats: int = 10
    threads: int | None = None


def _method_config(method: Method, config: PipelineConfig) -> tuple[PipelineConfig, str]:
    changed, note = method.configure(config)
    if method.needs_teacher and (changed.teacher != config.teacher or changed.data != config.data):
        raise ValueError(f"method {method.name} changes the teacher or data settings but shares the teacher")
    return changed, note


def _ensure_shared(folder: BenchmarkFolder, data_path: str, config: PipelineConfig, split: dict[str, list[str]],
                   *, teacher: bool, progress: ProgressReporter | None, cancel_file: str | Path | None) -> None:
    """The shared data stage (and teacher when asked for), run once."""
    shared = folder.shared
    done = (shared.prepared / "index.json").is_file() and (not teacher or (shared.teacher / "stage.json").is_file())
    if done:
        return
    shared.check_or_save_config(config)
    if not shared.split.is_file():
        write_json(shared.split, run_split_file(split, config))
    stages = ("data", "teacher") if teacher else ("data",)
    logger.info("benchmark: shared stages (%s) in %s", ", ".join(stages), shared.root)
    run_stages(data_path, shared.root, config, stages=stages, progress=progress, cancel_file=cancel_file)


def _train_seconds(run: RunFolder) -> tuple[float, dict[str, float]]:
    seconds = {}
    members = finished_reference_members(run.reference)  # an ensembled reference's other members
    for name in (*_STAGE_FOLDERS, *(str(p.parent.relative_to(run.root)) for p in members)):
        path = run.root / name / "stage.json"
        if path.is_file():
            value = read_json(path).get("seconds")
            if isinstance(value, (int, float)):
                seconds[name] = round(float(value), 1)
    return round(sum(seconds.values()), 1), seconds


def _evaluate(run: RunFolder, dataset: Dataset, test_ids: list[str], timing: TimingSettings) -> dict[str, Any]:
    facts = package_facts(run.package)
    onnx = OnnxSegmenter(run.package, threads=timing.threads)
    test = test_metrics(onnx, dataset, test_ids)
    ms = time_per_slice(onnx, batch_size=timing.batch_size, repeats=timing.repeats)
    speed = {"runtime": "onnxruntime", "threads": onnx.threads, "batch_size": timing.batch_size,
             "repeats": timing.repeats, "ms_per_slice": ms}
    export = read_json(run.root / "export.json")
    total, per_stage = _train_seconds(run)
    transfer = read_json(run.transfer_set / "stage.json") if (run.transfer_set / "stage.json").is_file() else None
    summary = read_json(run.summary) if run.summary.is_file() else {}
    return {
        **facts,
        "transfer_set": transfer,
        "chosen": summary.get("chosen"),
        "verdict": summary.get("verdict"),
        "decided_on": summary.get("decided_on"),
        "ms_per_slice": ms,
        "timing": speed,
        "val_dice": (export.get("validation") or {}).get("mean_dice"),
        "train_seconds": total,
        "stage_seconds": per_stage,
        "test": {k: v for k, v in test.items() if k != "cases"},
        "test_cases": test["cases"],
    }


def _run_method(method: Method, config: PipelineConfig, *, folder: BenchmarkFolder, data_path: str,
                base_config: PipelineConfig, dataset: Dataset, split: dict[str, list[str]], timing: TimingSettings,
                progress: ProgressReporter | None, cancel_file: str | Path | None) -> dict[str, Any]:
    run = folder.run(method.name)
    if not run.split.is_file():
        write_json(run.split, run_split_file(split, config))
    _ensure_shared(folder, data_path, base_config, split, teacher=method.needs_teacher, progress=progress,
                   cancel_file=cancel_file)
    share_stage(folder.shared, run, "prepared", "index.json")
    if method.needs_teacher:
        share_stage(folder.shared, run, "teacher", "stage.json")
    run_stages(data_path, run.root, config, progress=progress, cancel_file=cancel_file,
               model_stages=method.model_stages)
    logger.info("benchmark: %s: evaluating the exported student on %d test cases", method.name, len(split["test"]))
    return _evaluate(run, dataset, split["test"], timing)


def _header(folder: BenchmarkFolder, data_path: str, config: PipelineConfig, split: dict[str, list[str]],
            test_fraction: float, timing: TimingSettings, command: str | None) -> dict[str, Any]:
    teacher_stage = folder.shared.teacher / "stage.json"
    teacher = read_json(teacher_stage)["teacher"] if teacher_stage.is_file() else None
    if teacher is None:
        teacher_text = "not trained (no selected method needs it)"
    elif teacher.get("has_foundation_weights"):
        tuned = "+ LoRA" if teacher.get("lora") else "(frozen encoder, decoder fine-tuned)"
        teacher_text = f"{teacher.get('architecture')} from {Path((teacher.get('base') or {}).get('path', '?')).name} {tuned}"
    else:
        teacher_text = (f"NO foundation weights: a small SAM-layout model ('{teacher.get('architecture')}') "
                        "trained from scratch on the labelled cases")
    counts = {k: len(v) for k, v in split.items()}
    return {
        "tskd_version": __version__,
        "date": _dt.date.today().isoformat(),
        "command": command,
        "data": str(data_path),
        "split": counts,
        "test_fraction": test_fraction,
        "seed": config.seed,
        "teacher": teacher,
        "timing": {"batch_size": timing.batch_size, "repeats": timing.repeats, "threads": timing.threads},
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine()},
        "config": config.to_dict(),
        "summary": {
            "data": f"{data_path}: {counts['train']} labelled training / {counts['unlabelled']} unlabelled / "
                    f"{counts['val']} validation / {counts['test']} test cases (test: {test_fraction:.0%} of the "
                    "labelled subjects, held out)",
            "teacher": teacher_text,
            "metrics": "test set at full resolution in each image's own geometry; Dice mean over foreground "
                       "classes ± sd over test cases; HD95/ASSD in mm (mean over the cases where defined); "
                       f"ms / slice: onnxruntime (the teacher: torch), batch {timing.batch_size}, median of "
                       f"{timing.repeats} calls; val Dice: the exported student on the validation images; "
                       "training min: the training stages a method uses (the shared teacher included)",
        },
    }


def run_benchmark(
    data_path: str | Path,
    out: str | Path,
    config: PipelineConfig,
    *,
    methods: Sequence[str],
    test_fraction: float = DEFAULT_TEST_FRACTION,
    timing: TimingSettings | None = None,
    progress: ProgressReporter | None = None,
    cancel_file: str | Path | None = None,
    command: str | None = None,
) -> dict[str, Any]:
    """Train, export and test every method in ``methods`` on one split; write the results.

    Args:
        data_path: the dataset folder or manifest.
        out: the benchmark folder (created, or resumed; see :mod:`tskd.pipeline.comparison.folders`).
        config: the pipeline config every method starts from (``data.max_labelled``: labelled
            training cases; ``teacher.base``: the foundation checkpoint or ``none``).
        methods: method names (see :func:`tskd.pipeline.comparison.methods.available_methods`).
        test_fraction: share of the labelled subjects held out as the test set.
        timing: how the time per slice is measured.
        progress: progress display for the training stages (default: the console).
        cancel_file: when this file appears the running stage stops (run again to resume).
        command: the command line, recorded in the results.

    Returns:
        ``{"results": [one dict per method], "markdown": table, "files": {...}}``.

    Raises:
        ConfigError: the folder holds a benchmark made with other settings.
        CancelledError: stopped by a signal or the cancel file; running again resumes.
    """
    if not methods:
        raise ValueError("methods must name at least one method")
    timing = timing or TimingSettings()
    folder = BenchmarkFolder(Path(out))
    folder.root.mkdir(parents=True, exist_ok=True)
    handler = add_file_handler(folder.log)
    try:
        chosen = [get_method(name) for name in methods]
        dataset = load_dataset(str(data_path), subject_pattern=config.data.subject_pattern)
        split = load_or_make_split(folder.split, dataset, config, test_fraction=test_fraction)
        logger.info("benchmark: %s; methods: %s", {k: len(v) for k, v in split.items()}, ", ".join(methods))
        configured: dict[str, tuple[PipelineConfig, str] | Exception] = {}
        for method in chosen:
            try:
                configured[method.name] = _method_config(method, config)
            except Exception as exc:  # an impossible combination fails this method only
                configured[method.name] = exc
                continue
            folder.run(method.name).check_or_save_config(configured[method.name][0])  # refuse other settings now
        results = []
        for index, method in enumerate(chosen, start=1):
            results.append(_method_result(method, configured[method.name], index, len(chosen), folder=folder,
                                          data_path=str(data_path), base_config=config, dataset=dataset, split=split,
                                          timing=timing, progress=progress, cancel_file=cancel_file))
            table = _write_tables(folder, results, _header(folder, str(data_path), config, split, test_fraction,
                                                           timing, command))
        if (folder.shared.teacher / "stage.json").is_file():
            results.append(_teacher_row(folder, dataset, split["test"], timing))
            table = _write_tables(folder, results, _header(folder, str(data_path), config, split, test_fraction,
                                                           timing, command))
        plot_results(results, folder.results_png, title=f"{Path(data_path).name}: {len(split['train'])} labelled "
                                                        f"cases, test Dice on {len(split['test'])} held-out cases")
    finally:
        logging.getLogger("tskd").removeHandler(handler)
        handler.close()
    return {"results": results, "markdown": table, "files": {
        "markdown": str(folder.results_md), "csv": str(folder.results_csv), "json": str(folder.results_json),
        "plot": str(folder.results_png)}}


def _write_tables(folder: BenchmarkFolder, results: list[dict[str, Any]], header: dict[str, Any]) -> str:
    return write_table_files(results, header, markdown=folder.results_md, csv_path=folder.results_csv,
                             json_path=folder.results_json)


def _teacher_row(folder: BenchmarkFolder, dataset: Dataset, test_ids: list[str], timing: TimingSettings) -> dict[str, Any]:
    """The shared teacher's reference row (computed once; a failure is shown, not raised)."""
    if folder.teacher_result.is_file():
        return read_json(folder.teacher_result)
    try:
        row = teacher_reference(folder.shared, dataset, test_ids, batch_size=timing.batch_size, repeats=timing.repeats)
    except (CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:
        logger.error("benchmark: the teacher's reference row failed: %s\n%s", exc, traceback.format_exc())
        return {"method": TEACHER_ROW, "status": "failed", "error": f"{type(exc).__name__}: {exc}", "note": ""}
    write_json(folder.teacher_result, finite_json(row))
    return read_json(folder.teacher_result)


def _method_result(method: Method, configured: tuple[PipelineConfig, str] | Exception, index: int, count: int,
                   **kwargs: Any) -> dict[str, Any]:
    """The method's finished result, or run it now; a failure becomes a result with the error."""
    folder: BenchmarkFolder = kwargs["folder"]
    done = folder.result(method.name)
    if done.is_file():
        logger.info("benchmark: %d/%d %s: done earlier, not run again", index, count, method.name)
        return read_json(done)
    entry: dict[str, Any] = {"method": method.name, "title": method.title, "note": "", "status": "failed",
                             "error": None}
    logger.info("benchmark: %d/%d %s: %s", index, count, method.name, method.title)
    try:
        if isinstance(configured, Exception):
            raise configured
        config, entry["note"] = configured
        entry.update(_run_method(method, config, **kwargs))
        notes = (entry["note"], _transfer_note(entry.get("transfer_set")), _choice_note(entry))
        entry["note"] = "; ".join(n for n in notes if n)
    except (CancelledError, KeyboardInterrupt):
        raise
    except Exception as exc:  # one failing method must not stop the others
        entry["error"] = f"{type(exc).__name__}: {exc}"
        logger.error("benchmark: %s failed: %s\n%s", method.name, entry["error"], traceback.format_exc())
        write_json(folder.error(method.name), entry)
        return entry
    entry["status"] = "done"
    folder.error(method.name).unlink(missing_ok=True)
    write_json(done, finite_json(entry))
    logger.info("benchmark: %s: test Dice %.4f", method.name, entry["test"]["mean_dice"])
    return read_json(done)


def _choice_note(entry: dict[str, Any]) -> str:
    """The run's verdict line for a run that trained the supervised reference (see
    :func:`tskd.pipeline.choice.verdict`), else ""."""
    if entry.get("decided_on") in (None, "reference_disabled"):
        return ""
    return str(entry.get("verdict") or "")


def _transfer_note(transfer: dict[str, Any] | None) -> str:
    """``"transfer set: 540 real + 37 synthetic slices (163 dropped by the quality gate: uncertain 163)"`` or ""."""
    if not transfer:
        return ""
    counts = transfer.get("counts", {})
    real = counts.get("real_labelled", 0) + counts.get("real_unlabelled", 0)
    text = f"transfer set: {real} real + {counts.get('synthetic', 0)} synthetic slices"
    dropped = sum((transfer.get("dropped") or {}).values())
    if transfer.get("synthetic_model"):
        reasons = ", ".join(f"{k} {v}" for k, v in sorted((transfer.get("dropped") or {}).items()))
        text += f" ({dropped} dropped by the quality gate{': ' + reasons if reasons else ''})"
    return text
