"""Running stages of the pipeline on a run folder, with one progress display, a log file, a status
file for other processes, graceful stop (signals or a cancel file) and resume.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

from tskd import __version__
from tskd.engine import StopFlag, stop_on_signals
from tskd.errors import CancelledError
from tskd.log import add_file_handler
from tskd.pipeline.config import PipelineConfig
from tskd.pipeline.data_stage import run_data_stage
from tskd.pipeline.run_folder import RunFolder, write_json
from tskd.pipeline.teacher_stage import run_teacher_stage
from tskd.progress import ConsoleProgress, MultiProgress, ProgressEvent, ProgressReporter, StatusFileProgress

__all__ = ["run_stages", "TRAINING_STAGES"]

logger = logging.getLogger(__name__)

#: Stages that train something, in pipeline order (used for "stage i of n" in progress displays).
TRAINING_STAGES = ("teacher",)


def run_stages(
    data_path: str | Path,
    out: str | Path,
    config: PipelineConfig,
    *,
    stages: Sequence[str] = ("data",) + TRAINING_STAGES,
    progress: ProgressReporter | None = None,
    cancel_file: str | Path | None = None,
) -> dict[str, Any]:
    """Run ``stages`` on ``out`` (creating it or resuming it) and return the run summary.

    Args:
        data_path: the dataset folder or manifest.
        out: the run folder.
        config: the resolved pipeline config (saved as ``config.yaml``; a folder made with other
            settings is refused).
        stages: which stages to run; ``data`` always runs (it is cheap when already done).
        progress: where progress events go besides ``status.json`` (default: the console).
        cancel_file: when this file appears, the current stage saves a checkpoint and stops.

    Raises:
        CancelledError: stopped by a signal or the cancel file; running again resumes.
    """
    run = RunFolder(Path(out))
    run.check_or_save_config(config)
    log_handler = add_file_handler(run.log)
    status = StatusFileProgress(run.status)
    reporter = MultiProgress([progress or ConsoleProgress(), status])
    flag = StopFlag(cancel_file)
    training = [s for s in TRAINING_STAGES if s in stages]
    summary: dict[str, Any] = {"tskd_version": __version__, "run": str(run.root), "data": str(data_path), "stages": {}}
    started = time.monotonic()
    logger.info("run %s: stages %s", run.root, ", ".join(stages))
    try:
        with stop_on_signals(flag):
            data = run_data_stage(run, str(data_path), config, progress=reporter)
            summary["data_summary"] = data.describe()

            def position(name: str) -> dict[str, int]:
                return {"stage_index": training.index(name) + 1, "stage_count": len(training)}

            if "teacher" in stages:
                teacher = run_teacher_stage(run, data, config, progress=reporter, stop_flag=flag, **position("teacher"))
                summary["stages"]["teacher"] = {
                    "folder": str(run.teacher),
                    "metrics": teacher.metrics,
                    "architecture": teacher.info.get("architecture"),
                    "has_foundation_weights": teacher.has_foundation_weights,
                    "trainable_parameters": teacher.trainable.get("trainable"),
                }
    except CancelledError:
        logger.warning("run %s cancelled; run the same command again to resume", run.root)
        raise
    except Exception as exc:
        reporter(ProgressEvent(stage="pipeline", state="failed", message=f"{type(exc).__name__}: {exc}"))
        raise
    finally:
        logging.getLogger("tskd").removeHandler(log_handler)
        log_handler.close()
    summary["seconds"] = round(time.monotonic() - started, 1)
    write_json(run.summary, summary)
    reporter(ProgressEvent(stage="pipeline", state="done", message="finished", stage_index=len(training),
                           stage_count=len(training)))
    return summary
