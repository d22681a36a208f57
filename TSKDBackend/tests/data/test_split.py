"""Subject-wise splits."""

from __future__ import annotations

from pathlib import Path

import pytest

from tskd.data.cases import Case
from tskd.data.split import subject_split
from tskd.errors import DataError


def cases(n_subjects=10, per_subject=2, unlabelled=3):
    out = []
    for s in range(n_subjects):
        for k in range(per_subject):
            out.append(Case(f"s{s}_{k}", f"s{s}", Path(f"s{s}_{k}.png"), Path(f"s{s}_{k}_mask.png")))
    for u in range(unlabelled):
        out.append(Case(f"u{u}", f"s{u}", Path(f"u{u}.png")))  # unlabelled images of subjects 0..2
    return out


def test_no_subject_on_both_sides_and_deterministic():
    all_cases = cases()
    train, val = subject_split(all_cases, val_fraction=0.3, seed=7)
    assert {c.subject_id for c in train}.isdisjoint({c.subject_id for c in val})
    assert len({c.subject_id for c in val}) == 3 and len(val) == 6
    assert all(c.labelled for c in val)
    assert (train, val) == subject_split(list(reversed(all_cases)), val_fraction=0.3, seed=7)
    other = subject_split(all_cases, val_fraction=0.3, seed=8)[1]
    assert {c.subject_id for c in other} != {c.subject_id for c in val}  # the seed matters


def test_unlabelled_cases_train_unless_their_subject_validates():
    train, val = subject_split(cases(), val_fraction=0.2, seed=0)
    val_subjects = {c.subject_id for c in val}
    unlabelled_train = {c.case_id for c in train if not c.labelled}
    assert unlabelled_train == {f"u{u}" for u in range(3) if f"s{u}" not in val_subjects}


def test_small_datasets():
    train, val = subject_split(cases(2, 1, 0), val_fraction=0.1)
    assert len(train) == 1 and len(val) == 1  # min_val keeps one subject out
    train, val = subject_split(cases(1, 3, 0), val_fraction=0.0)
    assert len(train) == 3 and val == []
    with pytest.raises(DataError, match="at least 2 labelled subjects, found 1"):
        subject_split(cases(1, 3, 0))
    with pytest.raises(ValueError, match="val_fraction"):
        subject_split(cases(), val_fraction=1.0)
