"""The synthesis stage through its commands, and the transfer set it builds for distillation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tskd.cli.main import main
from tskd.data.image import read_image
from tskd.pipeline.data_stage import load_prepared_data
from tskd.pipeline.run_folder import RunFolder
from tskd.data.transfer_set import TransferSet


def test_synth_train_then_generate(phantom_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["synth", "train", "--data", str(phantom_dataset), "--out", str(out), "--preset", "tiny",
                 "--max-steps", "20"]) == 0
    assert (out / "synthesis" / "model" / "diffusion.json").is_file()
    history = [json.loads(line) for line in (out / "synthesis" / "metrics.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in history if r["kind"] == "train"][-1] == 20

    gen = tmp_path / "gen"
    assert main(["synth", "generate", "--model", str(out), "--n", "5", "--out", str(gen), "--seed", "3"]) == 0
    files = sorted(p.name for p in (gen / "images").iterdir())
    assert files == [f"synthetic_{s:06d}.nii.gz" for s in range(3, 8)]
    first = read_image(gen / "images" / files[0]).array
    assert first.shape == (32, 32) and np.isfinite(first).all()
    assert (gen / "grid.png").is_file()

    # deterministic per seed, and an existing image is kept (resume)
    again = tmp_path / "again"
    assert main(["synth", "generate", "--model", str(out / "synthesis" / "model"), "--n", "2", "--out", str(again),
                 "--seed", "3"]) == 0
    # equal up to float rounding: batches of 2 and 5 reduce in a different order
    np.testing.assert_allclose(read_image(again / "images" / files[0]).array, first, atol=1e-4)


def test_bad_model_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["synth", "generate", "--model", str(tmp_path), "--n", "2", "--out", str(tmp_path / "o")]) == 2
    assert "no diffusion model here" in capsys.readouterr().err


@pytest.mark.slow  # reads the session's shared tiny run (about a minute to build)
def test_transfer_set_holds_real_and_gated_synthetic_items(shared_run):
    # the session's shared tiny run (tests/conftest.py): its transfer set, with 16 synthetic images asked for
    wanted = shared_run.config.synthesis.num_synthetic
    assert wanted == 16
    summary = shared_run.result["run"]
    run = RunFolder(shared_run.run)
    data = load_prepared_data(run)
    transfer = TransferSet(run.transfer_set)
    counts = transfer.counts()
    assert counts["real_labelled"] == data.train_labelled.size
    assert counts["real_unlabelled"] == data.train_unlabelled.size
    stats = summary["stages"]["synthesis"]["transfer_set"]
    assert counts["synthetic"] + sum(stats["dropped"].values()) >= min(wanted, counts["synthetic"] + 1)
    assert counts["synthetic"] <= wanted
    item = transfer[int(transfer.indices("real_labelled")[0])]
    assert item.soft.shape == (data.num_classes, 64, 64)
    np.testing.assert_allclose(item.soft.sum(axis=0), 1.0, atol=2e-2)
    assert item.label is not None and item.label.max() < data.num_classes
    validation_cases = set(data.split["val"])
    assert not any(transfer.provenance(i).get("case_id") in validation_cases for i in range(len(transfer)))


@pytest.mark.slow  # reads the session's shared tiny run (about a minute to build)
def test_the_teachers_pass_over_the_real_slices_reports_progress(shared_run, tmp_path):
    """The teacher labelling the real training slices reported nothing before (with LiteMedSAM on two cores,
    the encoder's first pass: 20-26 silent minutes on the hippocampus subset of docs/benchmarks.md). Now each
    chunk is a progress event, counted in one range with the synthetic images that follow."""
    from tskd.pipeline.transfer_stage import build_transfer_set
    from tskd.teacher.storage import load_teacher

    run = RunFolder(shared_run.run)
    data = load_prepared_data(run)
    teacher = load_teacher(run.teacher).eval()
    events = []
    build_transfer_set(RunFolder(tmp_path / "run"), data, shared_run.config, teacher, None, progress=events.append)
    real = data.train_labelled.size + data.train_unlabelled.size
    assert real > 64  # more than one chunk of each kind below
    assert {e.stage for e in events} == {"transfer_set"} and {e.total for e in events} == {real}
    steps = [e.step for e in events]
    assert steps == sorted(set(steps)) and steps[-1] == real
    assert data.train_labelled.size in steps  # the labelled slices' last chunk, then the unlabelled ones'
    assert len(steps) >= 2
