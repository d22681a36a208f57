"""Running stages of the pipeline on a run folder, with one progress display, a log file, a status
file for other processes, graceful stop (signals or a cancel file) and resume.

Under ``torchrun`` / ``accelerate launch`` (N processes on one or several nodes) every process calls
:func:`run_stages` with the same arguments. Every process joins each training stage (the engine
splits each global batch across them, averages gradients and writes checkpoints once); the main
process (global rank 0) alone prepares the data, builds the transfer set, exports the student and
writes the config, split, status, log, summary and report, while the others wait for it (see
:mod:`tskd.engine.distributed` and docs/distributed.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Sequence

from tskd import __version__
from tskd.atomic import write_json
from tskd.engine import StopFlag, stop_on_signals
from tskd.engine.distributed import broadcast_object, init_distributed, on_main
from tskd.errors import CancelledError, ConfigError
from tskd.log import add_file_handler
from tskd.runconfig import PipelineConfig
from tskd.pipeline.data_stage import PreparedData, load_prepared_data, run_data_stage
from tskd.pipeline.run_folder import RunFolder
from tskd.pipeline.stage import StageContext
from tskd.pipeline.teacher_stage import run_teacher_stage, teacher_entry
from tskd.runtime.box_model import BOX_MODEL_FOLDER
from tskd.pipeline.update import (
    PreviousRun,
    copy_synthesis,
    lineage,
    lineage_line,
    load_previous_run,
    stage_config,
    write_lineage,
)
from tskd.progress import (
    ConsoleProgress,
    MultiProgress,
    NullProgress,
    ProgressEvent,
    ProgressReporter,
    StatusFileProgress,
)

__all__ = ["run_stages", "format_summary", "uses_cpu", "ModelStages", "TRAINING_STAGES", "ALL_STAGES",
           "COMPARISON_KEYS"]

logger = logging.getLogger(__name__)

#: Stages that train something, in pipeline order (used for "stage i of n" in progress displays).
TRAINING_STAGES = ("teacher", "synthesis", "distill", "finetune", "reference")
#: Every stage, in order.
ALL_STAGES = ("data",) + TRAINING_STAGES + ("export", "report")
#: What ``summary.json`` records at its top about the choice between the two students (see
#: :mod:`tskd.pipeline.choice`): fixed keys, present in every ``tskd train`` run that exported.
COMPARISON_KEYS = ("distilled", "reference", "chosen", "decided_on", "val_subjects", "warning", "verdict")

#: Model stages other than TS-KD's (the benchmark's baselines): called after the data stage with the
#: run folder, the prepared data, the config, the progress/stop context and the summary to fill in.
ModelStages = Callable[[RunFolder, PreparedData, PipelineConfig, StageContext, "dict[str, Any]"], None]


def uses_cpu(config: PipelineConfig) -> bool:
    """Whether the stages train on CPUs; under several processes they must all agree.

    Raises:
        ConfigError: some stages ask for a GPU and others for the CPU (a process cannot switch).
    """
    import torch

    gpu = torch.cuda.is_available()
    devices = {path: engine.device for path, engine in config.engine_configs()}
    on_cpu = {path: d == "cpu" or (d == "auto" and not gpu) for path, d in devices.items()}
    if len(set(on_cpu.values())) > 1:
        cpu_stages = sorted(p for p, c in on_cpu.items() if c)
        raise ConfigError(
            f"under several processes every stage must train on the same kind of device, but "
            f"{', '.join(f'{p}.device' for p in cpu_stages)} choose the CPU and the others a GPU; "
            "make the 'device' settings agree"
        )
    return all(on_cpu.values())


def run_stages(
    data_path: str | Path,
    out: str | Path,
    config: PipelineConfig,
    *,
    stages: Sequence[str] = ALL_STAGES,
    progress: ProgressReporter | None = None,
    cancel_file: str | Path | None = None,
    model_stages: ModelStages | None = None,
) -> dict[str, Any]:
    """Run ``stages`` on ``out`` (creating it or resuming it) and return the run summary.

    Args:
        data_path: the dataset folder or manifest.
        out: the run folder.
        config: the resolved pipeline config (saved as ``config.yaml``; a folder made with other
            settings is refused).
        stages: which stages to run; ``data`` always runs (it is cheap when already done).
        progress: where progress events go besides ``status.json`` (default: the console); used
            on the main process only.
        cancel_file: when this file appears, the current stage saves a checkpoint and stops.
        model_stages: run these instead of TS-KD's teacher ... export stages (``stages`` then only
            matters for the data stage); used by the benchmark's baselines.

    Returns:
        the summary (also written to ``summary.json``), the same on every process.

    Raises:
        CancelledError: stopped by a signal or the cancel file; running again resumes.
    """
    dist = init_distributed(cpu=uses_cpu(config)) if _launched_distributed() else None
    main = dist is None or dist.is_main
    run = RunFolder(Path(out))
    previous = None
    if config.update.from_run:  # an update: start from a previous run's models, briefly
        previous = load_previous_run(config.update.from_run, config)
        if previous.root.resolve() == run.root.resolve():
            raise ConfigError(f"update.from_run: {previous.root} is this run's own folder; an update writes a new "
                              "run folder (--out) next to the previous one")
        config = stage_config(config, previous)
    on_main(run.check_or_save_config, config)
    log_handler = add_file_handler(run.log) if main else None
    if main:
        reporter: ProgressReporter = MultiProgress([progress or ConsoleProgress(), StatusFileProgress(run.status)])
    else:
        reporter = NullProgress()
    flag = StopFlag(cancel_file)
    training = [s for s in TRAINING_STAGES if s in stages and (s != "reference" or config.reference.enabled)]
    summary: dict[str, Any] = {"tskd_version": __version__, "run": str(run.root), "data": str(data_path), "stages": {}}
    if dist is not None:
        summary["processes"] = dist.world_size
        logger.info("run %s: %d processes; rank 0 prepares data, builds the transfer set and exports", run.root,
                    dist.world_size)
    started = time.monotonic()
    logger.info("run %s: stages %s", run.root, ", ".join(stages))
    try:
        with stop_on_signals(flag):
            data = on_main(run_data_stage, run, str(data_path), config, progress=reporter, previous=previous)
            if data is None:  # the other ranks read what rank 0 prepared
                data = load_prepared_data(run)
            summary["data_summary"] = data.describe()
            if previous is not None:
                summary["lineage"] = lineage(previous, data.split)
                on_main(write_lineage, run, summary["lineage"])
                on_main(copy_synthesis, previous, run, config)

            def position(name: str) -> dict[str, int]:
                index = training.index(name) + 1 if name in training else len(training)
                return {"stage_index": index, "stage_count": len(training)}

            if model_stages is not None:
                model_stages(run, data, config, StageContext(reporter, flag), summary)
            else:
                _run_model_stages(run, data, config, stages, reporter, flag, position, summary, previous)
            summary["seconds"] = round(time.monotonic() - started, 1)
            if "report" in stages and "package" in summary["stages"]:
                from tskd.pipeline.report import write_report

                report = on_main(write_report, run, data, summary)
                summary["stages"]["report"] = {"folder": str(report), "result": "loss curves, Dice, overlays"}
    except CancelledError:
        logger.warning("run %s cancelled; run the same command again to resume", run.root)
        raise
    except Exception as exc:
        reporter(ProgressEvent(stage="pipeline", state="failed", message=f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        if log_handler is not None:
            logging.getLogger("tskd").removeHandler(log_handler)
            log_handler.close()
    on_main(write_json, run.summary, summary)
    reporter(ProgressEvent(stage="pipeline", state="done", message="finished", stage_index=len(training),
                           stage_count=len(training)))
    return broadcast_object(summary)


def _launched_distributed() -> bool:
    import os

    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def _run_model_stages(run: RunFolder, data: Any, config: PipelineConfig, stages: Sequence[str],
                      reporter: ProgressReporter, flag: StopFlag, position: Any, summary: dict[str, Any],
                      previous: PreviousRun | None = None) -> None:
    """Teacher, synthesis + transfer set, distillation, fine-tuning, the supervised reference (each
    only when asked for), then the export of the better of the two students. With ``previous`` (an
    update) the teacher and the students start from that run's (:mod:`tskd.pipeline.update`).

    Each training stage runs on every process; the stage functions write their files on rank 0
    and return only when those files exist. The transfer set (needs the teacher) and the export
    run on rank 0 alone.
    """
    # each stage's module is imported when it runs: 'tskd teacher finetune' (data and teacher only)
    # then imports neither MONAI (the students, the surface metrics) nor diffusers
    teacher = None
    context = StageContext(reporter, flag)
    if "teacher" in stages:
        teacher = run_teacher_stage(run, data, config, context.at(**position("teacher")),
                                    start_from=previous.run.teacher if previous is not None else None)
        summary["stages"]["teacher"] = {
            "folder": str(run.teacher),
            "metrics": teacher.metrics,
            "architecture": teacher.info.get("architecture"),
            "has_foundation_weights": teacher.has_foundation_weights,
            "trainable_parameters": teacher.trainable.get("trainable"),
            **teacher_entry(teacher.info),
        }
        if teacher.box_model is not None:
            summary["stages"]["teacher"]["box_model"] = {"folder": str(run.teacher / BOX_MODEL_FOLDER),
                                                         "metrics": teacher.box_metrics}
    if "synthesis" in stages:
        from tskd.pipeline.synthesis_stage import run_synthesis_stage
        from tskd.pipeline.transfer_stage import build_transfer_set

        diffusion = run_synthesis_stage(run, data, config, context.at(**position("synthesis")))
        summary["stages"]["synthesis"] = {
            "enabled": config.synthesis.enabled,
            "model_id": diffusion.model_id if diffusion is not None else None,
            "model": str(run.synthesis / "model") if diffusion is not None else None,
        }
        if teacher is not None:
            reuse = previous is not None and config.update.reuse_synthesis
            transfer = on_main(build_transfer_set, run, data, config, teacher.model, diffusion, progress=reporter,
                               stop_flag=flag, previous_synthetic=previous.run.transfer_set if reuse else None)
            summary["stages"]["synthesis"]["transfer_set"] = broadcast_object(transfer)
    if teacher is None or "distill" not in stages:
        return
    from tskd.pipeline.export_stage import export_run_model
    from tskd.pipeline.student_stage import run_distill_stage, run_finetune_stage, run_reference_stage

    student = run_distill_stage(run, data, config, teacher.model, context.at(**position("distill")),
                                start_from=previous.student if previous is not None else None)
    summary["stages"]["distill"] = _student_summary(run.distill)
    if "finetune" in stages:
        student = run_finetune_stage(run, data, config, student, context.at(**position("finetune")))
        summary["stages"]["finetune"] = _student_summary(run.finetune)
        reference = None
        if "reference" in stages and config.reference.enabled:
            reference = run_reference_stage(run, data, config, context.at(**position("reference")),
                                            start_from=previous.reference_student if previous is not None else None)
            summary["stages"]["reference"] = _student_summary(run.reference)
        if "export" in stages:
            export = broadcast_object(on_main(export_run_model, run, data, config, distilled=student,
                                              reference=reference, teacher_info=teacher.info,
                                              box_model=teacher.box_model))
            summary["stages"]["package"] = export
            comparison = export.get("comparison") or {}
            summary.update({key: comparison.get(key) for key in COMPARISON_KEYS})


def _student_summary(folder: Path) -> dict[str, Any]:
    from tskd.pipeline.run_folder import finished_reference_members, read_json
    stage = read_json(folder / "stage.json")
    summary = {"folder": str(folder), "metrics": stage["metrics"], "parameters": stage["parameters"]}
    members = finished_reference_members(folder)  # an ensembled reference's other members
    if members:
        summary["members"] = 1 + len(members)
        summary["parameters"] += sum(read_json(path)["parameters"] for path in members)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A short table of what a run did and where its outputs are."""
    run = Path(summary["run"])
    rows = [("stage", "result", "output")]
    data = summary.get("data_summary", {})
    cases = data.get("cases", {})
    rows.append(("data", f"{cases.get('train', 0)} train / {cases.get('val', 0)} val / "
                 f"{cases.get('unlabelled', 0)} unlabelled cases", str(run / "prepared")))
    stages = summary.get("stages", {})
    if "teacher" in stages:
        t = stages["teacher"]
        if t["has_foundation_weights"]:  # which weights, so a reader can tell the real model from a look-alike
            weights = [t.get("base"), f"sha256 {t['base_sha256'][:12]}" if t.get("base_sha256") else None,
                       f"encoder {t['encoder']}" if t.get("encoder") else None]
            note = f" ({', '.join(w for w in weights if w)})" if any(weights) else ""
        else:
            note = (" (NO foundation weights: 'tskd foundation get litemedsam' (a CPU) or medsam-vit-b (a GPU), "
                    "then --base auto)")
        rows.append(("teacher", f"{t['architecture']}{note}, val Dice {_dice(t['metrics'])}", t["folder"]))
    if "synthesis" in stages and "transfer_set" not in stages["synthesis"]:
        s = stages["synthesis"]
        rows.append(("synthesis", f"diffusion model {s['model_id']}" if s["enabled"] else "disabled",
                     s.get("model") or str(run / "synthesis")))
    elif "synthesis" in stages:
        s = stages["synthesis"]
        counts = s["transfer_set"]["counts"]
        dropped = sum(s["transfer_set"].get("dropped", {}).values())
        result = (f"{counts.get('synthetic', 0)} synthetic (+{dropped} dropped) + "
                  f"{counts.get('real_labelled', 0) + counts.get('real_unlabelled', 0)} real slices")
        rows.append(("synthesis", result if s["enabled"] else "disabled: real images only", str(run / "transfer_set")))
    for name in ("distill", "finetune", "reference"):
        if name in stages:
            st = stages[name]
            what = "labels only, " if name == "reference" else ""
            dice = f"val Dice {_dice(st['metrics'])}"
            if st.get("members"):
                what, dice = f"labels only, an ensemble of {st['members']}, ", f"{dice} (its first member)"
            rows.append((name, f"{what}{dice}, {st['parameters']:,} parameters", st["folder"]))
    for name in ("package", "report"):
        if name in stages:
            rows.append((name, stages[name].get("result", ""), stages[name]["folder"]))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if summary.get("verdict"):
        lines.append(f"exported: {summary['verdict']}")
    if summary.get("warning"):
        lines.append(f"warning: {summary['warning']}")
    if summary.get("lineage"):
        lines.append(f"updated from: {lineage_line(summary['lineage'])}")
    lines.append(f"finished in {summary.get('seconds', 0):.0f} s; run folder: {run}")
    return "\n".join(lines)


def _dice(metrics: dict[str, float]) -> str:
    value = metrics.get("val_dice")
    return f"{value:.3f}" if isinstance(value, (int, float)) else "n/a"
