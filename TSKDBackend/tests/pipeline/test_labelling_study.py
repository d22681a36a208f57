"""The labelling study's parts (issue 18; :mod:`tskd.pipeline.comparison.labelling`): round planning,
the random and suggested choices, the round dataset folder, and the resumable results file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tskd.data.cases import Case
from tskd.data.dataset import load_dataset
from tskd.errors import ConfigError
from tskd.pipeline.comparison.labelling import (
    StudyResults,
    choose_random,
    choose_suggested,
    format_table,
    initial_cases,
    plan_rounds,
    plot_study,
    write_round_dataset,
)

POOL = [f"c{i:02d}" for i in range(30)]


def test_plan_rounds_accepts_increasing_counts_within_the_pool():
    assert plan_rounds([10, 20, 40], 40) == [10, 20, 40]
    assert plan_rounds(["3", "5"], 5) == [3, 5]


@pytest.mark.parametrize("counts, message", [
    ([], "at least one"),
    ([0, 5], "at least 1"),
    ([5, 5], "must increase"),
    ([10, 5], "must increase"),
    ([10, 50], "pool holds only 40"),
])
def test_plan_rounds_refuses_bad_counts(counts, message):
    with pytest.raises(ValueError, match=message):
        plan_rounds(counts, 40)


def test_random_choice_is_reproducible_by_seed_and_skips_labelled():
    first = choose_random(POOL, ["c00", "c01"], 5, seed=3, round_index=1)
    assert first == choose_random(list(reversed(POOL)), ["c01", "c00"], 5, seed=3, round_index=1)
    assert len(set(first)) == 5 and not set(first) & {"c00", "c01"}
    assert first != choose_random(POOL, ["c00", "c01"], 5, seed=4, round_index=1)
    assert first != choose_random(POOL, ["c00", "c01"], 5, seed=3, round_index=2)
    assert initial_cases(POOL, 4, seed=3) == initial_cases(POOL, 4, seed=3)
    with pytest.raises(ValueError, match="only 2 left"):
        choose_random(POOL[:4], POOL[:2], 3, seed=0, round_index=1)


def test_suggested_choice_takes_the_ranking_in_order_skipping_labelled():
    ranking = ["c05", "c01", "c09", "c05", "c02", "c07"]
    assert choose_suggested(ranking, ["c01", "c02"], 3) == ["c05", "c09", "c07"]
    assert choose_suggested(ranking, [], 2) == ["c05", "c01"]
    with pytest.raises(ValueError, match="holds 2 new cases, 3 were asked"):
        choose_suggested(["c01", "c03", "c04"], ["c01"], 3)


def _cases(root: Path, n: int) -> list[Case]:
    cases = []
    for i in range(n):
        image, label = root / "src" / "images" / f"case{i}.png", root / "src" / "masks" / f"case{i}.png"
        for path, text in ((image, f"image {i}"), (label, f"label {i}")):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        cases.append(Case(f"case{i}", f"case{i}", image, label))
    return cases


def test_round_dataset_links_labelled_and_unlabelled(tmp_path):
    cases = _cases(tmp_path, 5)
    pool = [c.case_id for c in cases[:4]]  # case4: a test case, not in the round's dataset
    out = write_round_dataset(cases, ["case2", "case0"], pool, tmp_path / "round0")
    assert sorted(p.name for p in (out / "images").iterdir()) == ["case0.png", "case2.png"]
    assert sorted(p.name for p in (out / "labels").iterdir()) == ["case0.png", "case2.png"]
    assert sorted(p.name for p in (out / "unlabelled").iterdir()) == ["case1.png", "case3.png"]
    assert (out / "labels" / "case2.png").read_text(encoding="utf-8") == "label 2"
    assert (out / "images" / "case0.png").stat().st_ino == cases[0].image_path.stat().st_ino  # a hard link
    assert json.loads((out / "study_round.json").read_text(encoding="utf-8"))["unlabelled"] == ["case1", "case3"]
    with pytest.raises(ValueError, match="not in the dataset"):
        write_round_dataset(cases, ["nope"], pool, tmp_path / "round1")


def test_round_dataset_is_a_loadable_dataset(tmp_path):
    from tskd.data.phantom import write_phantom_dataset

    data = write_phantom_dataset(tmp_path / "data", cases=4, seed=0)
    dataset = load_dataset(str(data))
    ids = [c.case_id for c in dataset.cases]
    round_data = load_dataset(str(write_round_dataset(dataset.cases, ids[:2], ids, tmp_path / "round")))
    assert sorted(c.case_id for c in round_data.cases if c.labelled) == sorted(ids[:2])
    assert sorted(c.case_id for c in round_data.cases if not c.labelled) == sorted(ids[2:])


def _record(arm: str, r: int, dice: float) -> dict:
    return {"arm": arm, "round": r, "labelled": 3 + 2 * r, "test_dice": dice, "dice_sd": 0.01, "wall_s": 90.0,
            "steps": 120}


def test_results_resume_skips_finished_rounds_and_refuse_other_settings(tmp_path):
    path = tmp_path / "study.json"
    study = StudyResults(path, {"seed": 0, "rounds": [3, 5]})
    study.set_labelled("random", 0, ["a", "b", "c"])
    study.add_record(_record("random", 0, 0.5))
    study.add_record(_record("random", 0, 0.6))  # a rerun of the same round replaces it
    again = StudyResults(path, {"seed": 0, "rounds": [3, 5]})
    assert again.record("random", 0)["test_dice"] == 0.6 and len(again.data["records"]) == 1
    assert again.record("random", 1) is None and again.record("suggested", 0) is None
    assert again.labelled("random", 0) == ["a", "b", "c"] and again.labelled("random", 1) is None
    with pytest.raises(ConfigError, match=r"other settings \(seed\)"):
        StudyResults(path, {"seed": 1, "rounds": [3, 5]})


def test_results_accept_more_rounds_at_the_end_only(tmp_path):
    path = tmp_path / "study.json"
    StudyResults(path, {"seed": 0, "rounds": [3, 5]}).add_record(_record("random", 0, 0.5))
    longer = StudyResults(path, {"seed": 0, "rounds": [3, 5, 10]})  # a finished study continued
    assert longer.record("random", 0)["test_dice"] == 0.5 and longer.data["settings"]["rounds"] == [3, 5, 10]
    longer.save()
    assert StudyResults(path, {"seed": 0, "rounds": [3, 5, 10]}).record("random", 0) is not None
    for rounds in ([3, 6, 10], [3], [5, 10, 20]):  # earlier rounds changed, or fewer: refused
        with pytest.raises(ConfigError, match=r"other settings \(rounds\)"):
            StudyResults(path, {"seed": 0, "rounds": rounds})


def test_table_and_plot(tmp_path):
    records = [_record("suggested", 1, 0.7), _record("random", 0, 0.5), _record("random", 1, float("nan"))]
    table = format_table(records).splitlines()
    assert table[2] == "| 0 | 3 | random | 0.500 ± 0.010 | 1.5 | 120 |"
    assert table[3].startswith("| 1 | 5 | random | - ± 0.010 |") and "suggested" in table[4]
    png = plot_study(records, tmp_path / "plot.png", title="t")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
