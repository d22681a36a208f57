"""Run the real teacher stage of a prepared run folder; launched by test_distributed_stage.py as two
processes under torchrun, and called there in the test process (:func:`main`) for the one-process
reference.

Usage: python dist_stage_worker.py RUN_DIR
Writes RUN_DIR/seen_rank{R}.json: the (slice index, augmentation seed) pairs this rank loaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tskd.engine import process_info
from tskd.pipeline import teacher_stage
from tskd.runconfig import resolve_config
from tskd.pipeline.data_stage import load_prepared_data
from tskd.pipeline.run_folder import RunFolder
from tskd.pipeline.stage import StageContext
from tskd.progress import NullProgress

SEEN: list[list[int]] = []


class RecordingSlices(teacher_stage.SliceDataset):
    """The stage's training dataset, noting every sample it serves."""

    def sample(self, position, seed):
        item = super().sample(position, seed)
        SEEN.append([int(item["index"]), int(seed)])
        return item


def main(run_dir: str) -> None:
    original = teacher_stage.SliceDataset
    teacher_stage.SliceDataset = RecordingSlices  # the stage builds its datasets from this name
    SEEN.clear()
    try:
        run = RunFolder(Path(run_dir))
        config = resolve_config(preset="tiny", overrides={"teacher": {"train": {
            "max_steps": 6, "batch_size": 8, "warmup_steps": 1, "validate_every": 3, "checkpoint_every": 3,
            "log_every": 1, "device": "cpu"}}})
        result = teacher_stage.run_teacher_stage(run, load_prepared_data(run), config, StageContext(NullProgress()))
    finally:
        teacher_stage.SliceDataset = original
    info = process_info()
    Path(run_dir, f"seen_rank{info.rank}.json").write_text(json.dumps(SEEN), encoding="utf-8")
    Path(run_dir, f"metrics_rank{info.rank}.json").write_text(json.dumps(result.metrics), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
