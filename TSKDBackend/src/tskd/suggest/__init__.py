"""What to label next: rank the unlabelled slices and cases of a dataset for a trained run.

* :class:`SuggestConfig` - the settings and their defaults;
* :mod:`tskd.suggest.scoring` - per-slice scores (student entropy, teacher-student disagreement);
* :mod:`tskd.suggest.select` - the greedy pick with a diversity term and a cap per case;
* :func:`suggest` - the whole thing on a run folder and a dataset (``tskd suggest``).

Importing this package loads numpy and the light layers only (no torch): the teacher's loader
imports torch when a run's teacher is used.
"""

from __future__ import annotations

from tskd.suggest.config import SuggestConfig
from tskd.suggest.scoring import (
    VolumeScores,
    combine_scores,
    normalized_entropy,
    score_volume,
    total_variation_distance,
    softmax,
)
from tskd.suggest.select import CaseScore, SliceCandidate, Suggestion, explain, rank_cases, select
from tskd.suggest.suggestions import (
    SuggestResult,
    format_suggestions,
    list_cases,
    load_student,
    load_teacher,
    score_cases,
    suggest,
    write_suggestions,
)

__all__ = [
    "SuggestConfig",
    "VolumeScores",
    "softmax",
    "normalized_entropy",
    "total_variation_distance",
    "combine_scores",
    "score_volume",
    "SliceCandidate",
    "Suggestion",
    "CaseScore",
    "select",
    "rank_cases",
    "explain",
    "SuggestResult",
    "load_student",
    "load_teacher",
    "list_cases",
    "score_cases",
    "suggest",
    "format_suggestions",
    "write_suggestions",
]
