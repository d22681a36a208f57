"""Run the toy training stage; launched by test_distributed.py with 1 or 2 processes.

Usage: python ddp_worker.py OUT_DIR
Writes OUT_DIR/seen_rank{R}.json with the dataset indices each rank loaded.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.engine.toy import SquaresDataset, SquaresTask, TinyNet  # noqa: E402
from tskd.engine import EngineConfig, Trainer  # noqa: E402


def main(out: str) -> None:
    torch.manual_seed(0)
    model = TinyNet()
    model.body[2].p = 0.0  # per-rank dropout streams differ; keep the arithmetic comparable
    dataset = SquaresDataset(64)
    config = EngineConfig(
        max_steps=12, batch_size=8, lr=0.05, warmup_steps=2, checkpoint_every=6, validate_every=6,
        log_every=1, device="cpu",
    )
    Trainer(
        model=model, task=SquaresTask(SquaresDataset(8, seed=1)), train_dataset=dataset, config=config,
        out_dir=out, stage="toy",
    ).fit()
    rank = int(os.environ.get("RANK", 0))
    Path(out, f"seen_rank{rank}.json").write_text(json.dumps(dataset.seen), encoding="utf-8")


if __name__ == "__main__":
    main(sys.argv[1])
