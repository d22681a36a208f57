"""Subject-wise train/validation splits.

Images of one subject (two frames of one fetus, two scans of one patient) look alike; if they sit on
both sides of a split, validation scores are optimistic. The split is therefore drawn over subjects
(:attr:`~tskd.data.cases.Case.subject_id`), deterministically for a seed.
"""

from __future__ import annotations

import random
from typing import Sequence

from tskd.data.cases import Case
from tskd.errors import DataError

__all__ = ["subject_split"]


def subject_split(
    cases: Sequence[Case], *, val_fraction: float = 0.2, seed: int = 0, min_val: int = 1
) -> tuple[list[Case], list[Case]]:
    """Split cases into training and validation by subject.

    Only labelled cases are split. Unlabelled cases go to the training side (they feed the
    synthesis and distillation stages) unless their subject is in validation, in which case they are
    left out of both, so no validation subject is seen during training.

    Args:
        cases: the dataset's cases (labelled and unlabelled).
        val_fraction: share of labelled subjects held out, in ``[0, 1)``; 0 gives no validation.
        seed: random seed; the same cases and seed always give the same split.
        min_val: hold out at least this many subjects when ``val_fraction > 0``.

    Returns:
        ``(train_cases, val_cases)``, each sorted by case id.

    Raises:
        ValueError: ``val_fraction`` outside ``[0, 1)`` or negative ``min_val``.
        DataError: fewer than two labelled subjects while a validation set is wanted.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if min_val < 0:
        raise ValueError(f"min_val must be >= 0, got {min_val}")
    labelled = [c for c in cases if c.labelled]
    subjects = sorted({c.subject_id for c in labelled})
    n_val = 0
    if val_fraction > 0:
        if len(subjects) < 2:
            raise DataError(
                f"a validation set needs at least 2 labelled subjects, found {len(subjects)}; label another "
                "case (from another subject) or train without validation (validation fraction 0)"
            )
        n_val = min(max(min_val, round(val_fraction * len(subjects))), len(subjects) - 1)
    order = list(subjects)
    random.Random(seed).shuffle(order)
    val_subjects = set(order[:n_val])
    val = [c for c in labelled if c.subject_id in val_subjects]
    train = [c for c in cases if c.subject_id not in val_subjects]
    return sorted(train, key=lambda c: c.case_id), sorted(val, key=lambda c: c.case_id)
