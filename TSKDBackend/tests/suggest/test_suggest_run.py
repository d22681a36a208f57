"""``tskd suggest`` on a real (tiny) run: a phantom project whose one deliberately hard unlabelled
case (ten times the noise of the others) must come first, with and without the teacher; the JSON
file; the labelled cases left out unless asked for."""

from __future__ import annotations

import json

import pytest
import torch

from tskd.cli.main import main
from tskd.data.image import write_image
from tskd.data.phantom import PhantomConfig, make_phantom, write_phantom_dataset
from tskd.pipeline.run import run_stages
from tskd.progress import NullProgress
from tskd.runconfig import resolve_config
from tskd.suggest import SuggestConfig, suggest

pytestmark = pytest.mark.slow  # trains a tiny teacher and student (about a minute on 2 cores)

HARD = "case_hard"
SEED = 1


def _steps(n: int) -> dict:
    return {"train": {"max_steps": n, "warmup_steps": 0, "validate_every": 1000, "checkpoint_every": 1000}}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """6 labelled phantoms, 3 ordinary unlabelled ones (case_006..008) and the hard one; a run."""
    root = tmp_path_factory.mktemp("suggest")
    data = write_phantom_dataset(root / "data", cases=6, seed=SEED, unlabelled=3)
    hard, _ = make_phantom(PhantomConfig(seed=SEED, noise=0.8), 9)  # default noise: 0.05
    write_image(hard, data / "unlabelled" / f"{HARD}.nii.gz")
    config = resolve_config(preset="tiny", base="none", input_size=32, overrides={
        "data": {"val_fraction": 0.0, "augment": {"affine_prob": 0.0}},
        "teacher": _steps(150), "synthesis": {"enabled": False}, "reference": {"enabled": False},
        "distill": _steps(80), "finetune": _steps(60),
    })
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_stages(data, root / "run", config, stages=("data", "teacher", "synthesis", "distill", "finetune", "export"),
                   progress=NullProgress())
    finally:
        torch.set_num_threads(threads)
    return root / "run", data


def test_the_hard_case_is_suggested_first_with_the_teacher(project):
    run, data = project
    result = suggest(run, data)
    assert result.teacher_used
    assert [c.case_id for c in result.cases][0] == HARD
    assert {c.case_id for c in result.cases} == {"case_006", "case_007", "case_008", HARD}  # labelled ones left out
    first = result.suggestions[0]
    assert first.candidate.case_id == HARD and first.rank == 1
    assert first.candidate.disagreement is not None and "teacher disagrees" in first.why
    # the hard case clearly stands out, not by a hair
    assert result.cases[0].score > 2 * result.cases[1].score
    # at most max_per_case slices of it, then the others
    assert sum(1 for s in result.suggestions if s.candidate.case_id == HARD) == result.config.max_per_case
    assert len(result.suggestions) == result.config.top


def test_the_hard_case_is_suggested_first_by_the_student_alone(project):
    run, data = project
    result = suggest(run, data, use_teacher=False, config=SuggestConfig(top=4, max_per_case=1))
    assert not result.teacher_used and "--no-teacher" in result.teacher_note
    assert result.cases[0].case_id == HARD and result.cases[0].score > 1.5 * result.cases[1].score
    assert [s.candidate.case_id for s in result.suggestions][0] == HARD
    assert len({s.candidate.case_id for s in result.suggestions}) == 4  # one per case
    assert all(s.candidate.disagreement is None and s.why.startswith("uncertain student") for s in result.suggestions)


def test_the_command_prints_the_table_and_writes_the_json(project, tmp_path, capsys):
    run, data = project
    out = tmp_path / "next" / "suggestions.json"
    code = main(["suggest", "--model", str(run), "--data", str(data), "--top", "5", "--json", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    header, rule, first = printed.splitlines()[:3]
    assert header.split()[:4] == ["rank", "case", "slice", "score"] and "why" in header
    assert first.split()[:2] == ["1", HARD]
    saved = json.loads(out.read_text(encoding="utf-8"))
    assert saved["format"] == "tskd-suggestions" and saved["teacher"]["used"] is True
    assert [s["rank"] for s in saved["suggestions"]] == [1, 2, 3, 4, 5]
    assert saved["suggestions"][0]["case"] == HARD and saved["cases"][0]["case"] == HARD
    assert saved["config"]["top"] == 5 and saved["config"]["max_per_case"] == 3
    assert not list(out.parent.glob(".*"))  # written atomically: no temporary file left


def test_labelled_cases_are_ranked_only_when_asked(project):
    run, data = project
    result = suggest(run, data, include_labelled=True, use_teacher=False)
    assert len(result.cases) == 10 and result.cases[0].case_id == HARD
