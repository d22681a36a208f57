"""Picking the slices to label next: a greedy choice with a diversity term and a cap per case.

Pure Python on the per-slice scores (:mod:`tskd.suggest.scoring`); no model is involved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

from tskd.suggest.config import SuggestConfig

__all__ = ["SliceCandidate", "Suggestion", "CaseScore", "select", "rank_cases", "explain"]

logger = logging.getLogger(__name__)

#: A term is named in ``why`` when it brings at least this share of the slice's score.
_WHY_SHARE = 0.25


@dataclass(frozen=True)
class SliceCandidate:
    """One scored slice.

    Args:
        case_id: the case it belongs to.
        slice_index: its index along ``axis`` (the student's slice axis).
        score: the combined score (0..1).
        entropy: the student's normalised entropy (0..1).
        disagreement: the teacher-student total-variation distance (None without a teacher).
        axis: the numpy axis of the case's ``(k, j, i)`` array the slice is cut along.
    """

    case_id: str
    slice_index: int
    score: float
    entropy: float
    disagreement: Optional[float] = None
    axis: int = 0


@dataclass(frozen=True)
class Suggestion:
    """One entry of the ranked list.

    Args:
        rank: 1 for the first suggestion.
        candidate: the slice.
        why: the reasons in words (e.g. ``"uncertain student (entropy 0.41)"``).
    """

    rank: int
    candidate: SliceCandidate
    why: str

    def to_dict(self) -> dict[str, Any]:
        c = self.candidate
        return {"rank": self.rank, "case": c.case_id, "slice": c.slice_index, "axis": c.axis,
                "score": round(c.score, 6), "entropy": round(c.entropy, 6),
                "disagreement": None if c.disagreement is None else round(c.disagreement, 6), "why": self.why}


@dataclass(frozen=True)
class CaseScore:
    """A case's score: the mean of its best ``case_top_slices`` slice scores.

    Args:
        rank: 1 for the case most worth labelling.
        case_id: the case.
        score: the mean of its top slice scores.
        top_slices: those slices' indices, best first.
        num_slices: slices scored.
    """

    rank: int
    case_id: str
    score: float
    top_slices: tuple[int, ...]
    num_slices: int

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "case": self.case_id, "score": round(self.score, 6),
                "top_slices": list(self.top_slices), "num_slices": self.num_slices}


def explain(candidate: SliceCandidate, teacher_weight: float) -> str:
    """Why a slice is suggested: the terms that bring at least a quarter of its score."""
    w = float(teacher_weight) if candidate.disagreement is not None else 0.0
    terms = [((1.0 - w) * candidate.entropy, f"uncertain student (entropy {candidate.entropy:.2f})")]
    if candidate.disagreement is not None:
        terms.append((w * candidate.disagreement, f"teacher disagrees (distance {candidate.disagreement:.2f})"))
    total = sum(share for share, _ in terms)
    if total <= 0:
        return "no uncertainty found (every slice scores 0)"
    named = [text for share, text in sorted(terms, key=lambda t: -t[0]) if share >= _WHY_SHARE * total]
    return "; ".join(named)


def _order(candidate: SliceCandidate) -> tuple:
    return (-candidate.score, candidate.case_id, candidate.slice_index)


def select(candidates: Iterable[SliceCandidate], config: Optional[SuggestConfig] = None) -> list[Suggestion]:
    """The ``config.top`` slices to label next, greedily.

    Each round takes the slice with the highest *adjusted* score: its score times
    ``neighbour_penalty ** n``, where ``n`` counts the slices already chosen in the same case within
    ``neighbour_slices`` of it. A case with ``max_per_case`` chosen slices offers no more. Ties go
    to the lower case id, then the lower slice index, so the result is deterministic.

    Args:
        candidates: every scored slice (any order; duplicates of a case and slice are refused).
        config: ``top``, ``max_per_case``, ``neighbour_slices``, ``neighbour_penalty`` and
            ``teacher_weight`` (for ``why``).

    Returns:
        Up to ``config.top`` suggestions, rank 1 first.
    """
    config = config or SuggestConfig()
    pool = sorted(candidates, key=_order)
    seen = set()
    for c in pool:
        key = (c.case_id, c.slice_index)
        if key in seen:
            raise ValueError(f"slice {c.slice_index} of case {c.case_id!r} is listed twice")
        seen.add(key)
    chosen: list[SliceCandidate] = []
    per_case: dict[str, list[int]] = {}
    remaining = pool
    k, factor = int(config.neighbour_slices), float(config.neighbour_penalty)
    while remaining and len(chosen) < config.top:
        best, best_value = None, None
        for c in remaining:  # sorted by raw score: stop once no later slice can beat the best
            if best_value is not None and c.score < best_value:
                break
            taken = per_case.get(c.case_id, [])
            if len(taken) >= config.max_per_case:
                continue
            near = sum(1 for s in taken if abs(s - c.slice_index) <= k)
            value = c.score * factor**near
            if best_value is None or value > best_value:
                best, best_value = c, value
        if best is None:
            break
        chosen.append(best)
        per_case.setdefault(best.case_id, []).append(best.slice_index)
        remaining = [c for c in remaining if c is not best and len(per_case.get(c.case_id, [])) < config.max_per_case]
    return [Suggestion(rank, c, explain(c, config.teacher_weight)) for rank, c in enumerate(chosen, start=1)]


def rank_cases(candidates: Sequence[SliceCandidate], config: Optional[SuggestConfig] = None) -> list[CaseScore]:
    """Every case, most worth labelling first: the mean of its ``case_top_slices`` best slice scores."""
    config = config or SuggestConfig()
    by_case: dict[str, list[SliceCandidate]] = {}
    for c in candidates:
        by_case.setdefault(c.case_id, []).append(c)
    rows = []
    for case_id, slices in by_case.items():
        best = sorted(slices, key=_order)[: config.case_top_slices]
        rows.append((sum(c.score for c in best) / len(best), case_id, tuple(c.slice_index for c in best), len(slices)))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return [CaseScore(rank, case_id, score, top, n) for rank, (score, case_id, top, n) in enumerate(rows, start=1)]
