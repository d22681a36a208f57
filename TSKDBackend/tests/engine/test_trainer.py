from __future__ import annotations

import json

import pytest
import torch

from tskd.engine import EngineConfig, StepBatchSampler, StopFlag, Trainer
from tskd.errors import CancelledError, CheckpointError, ConfigError

from .toy import SquaresDataset, SquaresTask, TinyNet


def make_trainer(out, *, steps=60, stop_at=None, fingerprint=None, dataset=None, **cfg):
    torch.manual_seed(123)
    model = TinyNet()
    flag = StopFlag()
    dataset = dataset or SquaresDataset()

    def on_step(step, logs):
        if stop_at is not None and step == stop_at:
            flag.set("test stop")

    config = EngineConfig(
        max_steps=steps, batch_size=8, lr=0.05, warmup_steps=5, checkpoint_every=25, validate_every=20,
        log_every=5, device="cpu", **cfg,
    )
    trainer = Trainer(
        model=model, task=SquaresTask(SquaresDataset(8, seed=1)), train_dataset=dataset, config=config,
        out_dir=out, stage="toy", fingerprint=fingerprint or {"v": 1}, stop_flag=flag, on_step=on_step,
    )
    return trainer, model


def test_training_learns_and_writes_files(tmp_path):
    trainer, model = make_trainer(tmp_path)
    result = trainer.fit()
    assert result.steps == 60
    assert result.final_metrics["val_dice"] > 0.9
    train = [r for r in result.history if r["kind"] == "train"]
    assert train[-1]["loss"] < train[0]["loss"] * 0.5
    for name in ("latest.pt", "final.pt", "best.pt"):
        assert (tmp_path / "checkpoints" / name).is_file()
    lines = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["step"] for line in lines] == [r["step"] for r in result.history]


def test_resume_after_stop_matches_uninterrupted_run(tmp_path):
    full, full_model = make_trainer(tmp_path / "full")
    full.fit()

    first, _ = make_trainer(tmp_path / "cut", stop_at=33)
    with pytest.raises(CancelledError, match="step 33"):
        first.fit()
    assert not (tmp_path / "cut" / "checkpoints" / "final.pt").exists()

    again, again_model = make_trainer(tmp_path / "cut")  # fresh process state, same command
    result = again.fit()
    assert result.resumed_from == 33
    for (name, a), (_, b) in zip(full_model.state_dict().items(), again_model.state_dict().items()):
        assert torch.equal(a, b), name
    full_log = (tmp_path / "full" / "metrics.jsonl").read_text(encoding="utf-8")
    assert (tmp_path / "cut" / "metrics.jsonl").read_text(encoding="utf-8") == full_log


def test_finished_stage_is_not_trained_again(tmp_path):
    trainer, model = make_trainer(tmp_path)
    trainer.fit()
    trained = {k: v.clone() for k, v in model.state_dict().items()}
    again, fresh = make_trainer(tmp_path)
    result = again.fit()
    assert result.steps == 60 and result.final_metrics["val_dice"] > 0.9
    for key, value in fresh.state_dict().items():
        assert torch.equal(value, trained[key])


def test_checkpoint_from_other_settings_is_refused(tmp_path):
    first, _ = make_trainer(tmp_path, stop_at=30)
    with pytest.raises(CancelledError):
        first.fit()
    other, _ = make_trainer(tmp_path, fingerprint={"v": 2})
    with pytest.raises(CheckpointError, match="different settings"):
        other.fit()


def test_gradient_accumulation_matches_full_batch(tmp_path):
    a, model_a = make_trainer(tmp_path / "a", steps=10)
    b, model_b = make_trainer(tmp_path / "b", steps=10, grad_accum_steps=2)
    model_a.body[2].p = 0.0  # dropout off: identical arithmetic up to rounding
    model_b.body[2].p = 0.0
    a.fit()
    b.fit()
    for (name, x), (_, y) in zip(model_a.state_dict().items(), model_b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-5), name


def test_sampler_is_a_function_of_the_step():
    whole = list(StepBatchSampler(dataset_size=10, batch_size=4, max_steps=6, seed=3))
    tail = list(StepBatchSampler(dataset_size=10, batch_size=4, max_steps=6, start_step=4, seed=3))
    assert whole[4:] == tail
    split = list(StepBatchSampler(dataset_size=10, batch_size=4, grad_accum_steps=2, max_steps=6, seed=3))
    assert [x for pair in zip(split[::2], split[1::2]) for x in pair[0] + pair[1]] == [x for b in whole for x in b]
    first_epoch = [i for batch in whole for i, _ in batch][:10]
    assert sorted(first_epoch) == list(range(10))


def test_bad_settings_are_clear():
    with pytest.raises(ValueError, match="multiple of grad_accum_steps"):
        EngineConfig(batch_size=6, grad_accum_steps=4)
    with pytest.raises(ConfigError, match="max_steps"):
        EngineConfig.from_dict({"max_steps": 0})
