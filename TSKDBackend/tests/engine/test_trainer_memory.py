"""What a finished stage does with memory: on the CPU no full garbage collection (accelerate's
``free_memory``), which cost 0.3-1 s per stage with torch, MONAI and matplotlib loaded and frees
nothing there (no device cache; the run's accelerator is dropped with it)."""

from __future__ import annotations

import gc

from .test_trainer import make_trainer


def test_a_cpu_stage_ends_without_a_full_garbage_collection(tmp_path, monkeypatch):
    from accelerate import Accelerator

    freed, collections = [], []
    monkeypatch.setattr(Accelerator, "free_memory", lambda self, *objects: freed.append(self) or list(objects))
    monkeypatch.setattr(gc, "collect", lambda *args: collections.append(args) or 0)
    trainer, model = make_trainer(tmp_path, steps=10)
    result = trainer.fit()
    assert result.steps == 10 and (tmp_path / "checkpoints" / "final.pt").is_file()
    assert trainer.model is model  # the unwrapped model is back on the trainer
    assert freed == [] and collections == []
