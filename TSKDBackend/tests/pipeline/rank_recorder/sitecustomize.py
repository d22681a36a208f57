"""Test instrument for the workers of tests/pipeline/two_ranks.py (not a package; this folder is put on their
PYTHONPATH, and Python imports ``sitecustomize`` at start-up). In a torchrun worker (``RANK`` set) with
``TSKD_TEST_RANK_RECORDS`` naming a folder, it records what the teacher stage did on this rank: the
``(slice index, augmentation seed)`` pairs its training dataset served and the stage's metrics, written at exit
to ``FOLDER/rank{R}_{pid}.json`` when this process trained the teacher. Anywhere else it does nothing."""

from __future__ import annotations

import os

if os.environ.get("TSKD_TEST_RANK_RECORDS") and os.environ.get("RANK") is not None:
    import atexit
    import json
    from pathlib import Path

    from tskd.pipeline import run as _run
    from tskd.pipeline import teacher_stage as _teacher_stage

    _SEEN: list[list[int]] = []
    _METRICS: dict = {}

    class _RecordingSlices(_teacher_stage.SliceDataset):
        """The stage's training dataset, noting every sample it serves."""

        def sample(self, position, seed):
            item = super().sample(position, seed)
            _SEEN.append([int(item["index"]), int(seed)])
            return item

    _run_teacher_stage = _run.run_teacher_stage

    def _recording_stage(*args, **kwargs):
        result = _run_teacher_stage(*args, **kwargs)
        _METRICS.update(result.metrics)
        return result

    def _write() -> None:
        if _SEEN:  # a resumed run whose teacher was already done trains nothing here
            folder = Path(os.environ["TSKD_TEST_RANK_RECORDS"])
            record = {"seen": _SEEN, "metrics": _METRICS}
            (folder / f"rank{os.environ['RANK']}_{os.getpid()}.json").write_text(json.dumps(record), encoding="utf-8")

    _teacher_stage.SliceDataset = _RecordingSlices  # the stage builds its datasets from this name
    _run.run_teacher_stage = _recording_stage  # the pipeline calls the stage by this name
    atexit.register(_write)
