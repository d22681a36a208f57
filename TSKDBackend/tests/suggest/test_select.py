"""The greedy pick: ordering, the diversity term, the cap per case, the case ranking and ``why``."""

from __future__ import annotations

import pytest

from tskd.suggest import SliceCandidate, SuggestConfig, explain, rank_cases, select


def _case(case_id: str, scores: list[float]) -> list[SliceCandidate]:
    return [SliceCandidate(case_id, i, s, s) for i, s in enumerate(scores)]


def _picked(suggestions) -> list[tuple[str, int]]:
    return [(s.candidate.case_id, s.candidate.slice_index) for s in suggestions]


def test_without_diversity_or_cap_the_order_is_the_scores():
    candidates = _case("a", [0.1, 0.9, 0.5]) + _case("b", [0.7, 0.3])
    config = SuggestConfig(top=4, max_per_case=10, neighbour_penalty=1.0)
    picked = select(candidates, config)
    assert _picked(picked) == [("a", 1), ("b", 0), ("a", 2), ("b", 1)]
    assert [s.rank for s in picked] == [1, 2, 3, 4]
    scores = [s.candidate.score for s in picked]
    assert scores == sorted(scores, reverse=True)


def test_a_chosen_slice_pushes_its_neighbours_down():
    # case a: a smooth ridge around slice 5; case b: a single slice a bit lower than a's neighbours
    ridge = [0.2, 0.3, 0.5, 0.7, 0.85, 0.9, 0.85, 0.7, 0.5, 0.3, 0.2, 0.6]
    candidates = _case("a", ridge) + _case("b", [0.4, 0.45, 0.4])
    config = SuggestConfig(top=3, max_per_case=3, neighbour_slices=3, neighbour_penalty=0.25)
    picked = _picked(select(candidates, config))
    assert picked[0] == ("a", 5)
    # 0.85 x 0.25 for slices 4 and 6 loses to slice 11 (0.6, 6 away) and to case b's best (0.45)
    assert picked[1:] == [("a", 11), ("b", 1)]
    no_diversity = _picked(select(candidates, config.replace(neighbour_penalty=1.0)))
    assert no_diversity == [("a", 5), ("a", 4), ("a", 6)]


def test_the_penalty_compounds_and_ends_at_k_slices():
    candidates = _case("a", [0.9, 0.8, 0.0, 0.0, 0.5])
    config = SuggestConfig(top=3, max_per_case=3, neighbour_slices=3, neighbour_penalty=0.5)
    # after slice 0: slice 1 = 0.4, slice 4 (4 away, outside k) = 0.5
    assert _picked(select(candidates, config))[:2] == [("a", 0), ("a", 4)]
    # after 0 and 4: slice 1 is within 3 of both: 0.8 * 0.25 = 0.2 still beats the zeros
    assert _picked(select(candidates, config))[2] == ("a", 1)


def test_the_cap_per_case_holds_and_top_limits_the_list():
    candidates = _case("a", [0.9] * 20) + _case("b", [0.1] * 20)
    config = SuggestConfig(top=5, max_per_case=2, neighbour_penalty=1.0)
    picked = select(candidates, config)
    assert len(picked) == 4  # two cases x two: fewer than top when the cap runs out
    assert sum(1 for s in picked if s.candidate.case_id == "a") == 2
    assert len(select(candidates, config.replace(top=3))) == 3


def test_ties_are_broken_by_case_then_slice_and_duplicates_are_refused():
    candidates = _case("b", [0.5, 0.5]) + _case("a", [0.5])
    assert _picked(select(candidates, SuggestConfig(top=3, neighbour_penalty=1.0))) == [("a", 0), ("b", 0), ("b", 1)]
    with pytest.raises(ValueError, match="listed twice"):
        select(_case("a", [0.1]) + _case("a", [0.2]))


def test_case_score_is_the_mean_of_its_top_slices():
    candidates = _case("a", [0.9, 0.1, 0.1, 0.1]) + _case("b", [0.5, 0.5, 0.5, 0.0])
    cases = rank_cases(candidates, SuggestConfig(case_top_slices=3))
    assert [c.case_id for c in cases] == ["b", "a"]  # one hot slice does not make a hard case
    assert cases[0].score == pytest.approx(0.5) and cases[1].score == pytest.approx(1.1 / 3)
    assert cases[1].top_slices[0] == 0 and cases[1].num_slices == 4
    assert [c.case_id for c in rank_cases(candidates, SuggestConfig(case_top_slices=1))] == ["a", "b"]


def test_why_names_the_terms_that_make_the_score():
    assert explain(SliceCandidate("a", 0, 0.4, 0.4), 0.5).startswith("uncertain student")
    teacher = SliceCandidate("a", 0, 0.5 * 0.05 + 0.5 * 0.8, 0.05, 0.8)
    assert explain(teacher, 0.5).startswith("teacher disagrees") and "uncertain" not in explain(teacher, 0.5)
    both = SliceCandidate("a", 0, 0.5, 0.5, 0.5)
    assert "uncertain student" in explain(both, 0.5) and "teacher disagrees" in explain(both, 0.5)
    assert "no uncertainty" in explain(SliceCandidate("a", 0, 0.0, 0.0, 0.0), 0.5)


def test_bad_settings_are_refused_with_the_field_name():
    from tskd.errors import ConfigError

    with pytest.raises(ConfigError, match="top must be at least 1"):
        SuggestConfig.from_dict({"top": 0}, source="test")
    with pytest.raises(ConfigError, match="neighbour_penalty"):
        SuggestConfig.from_dict({"neighbour_penalty": 2.0}, source="test")
