"""Subject ids of cases, so that splits never put one person's images on both sides."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

from tskd.data.cases import WARNING, Problem
from tskd.data.discover import Candidate
from tskd.errors import DataError

__all__ = ["assign_subjects"]


def assign_subjects(
    candidates: list[Candidate], pattern: str | None, problems: list[Problem], root: Path
) -> dict[str, str]:
    """Subject id per case id.

    A manifest's ``subject`` column wins; else the first group of ``pattern`` found in the case
    name (the whole match when it has no group); else the case name itself. Without a pattern, case
    names that share a leading number (``010_HC``, ``010_2HC``) add a warning suggesting one.

    Args:
        candidates: the cases found.
        pattern: regular expression, or None.
        problems: warnings are appended here.
        root: the dataset folder, for messages.

    Raises:
        DataError: ``pattern`` is not a valid regular expression.
    """
    regex = None
    if pattern:
        try:
            regex = re.compile(pattern)
        except re.error as exc:
            raise DataError(f"subject pattern {pattern!r} is not a valid regular expression ({exc})") from None
    subjects, unmatched = {}, []
    for candidate in candidates:
        subject = candidate.subject_id
        if subject is None and regex is not None:
            match = regex.search(candidate.case_id)
            if match:
                subject = match.group(1) if regex.groups else match.group(0)
            else:
                unmatched.append(candidate.case_id)
        subjects[candidate.case_id] = subject or candidate.case_id
    if unmatched:
        problems.append(Problem(WARNING, root, f"subject pattern {pattern!r} does not match {len(unmatched)} case "
                                f"names (e.g. {', '.join(unmatched[:3])}); each of them is its own subject"))
    elif regex is None and not any(c.subject_id for c in candidates):
        leading = Counter(m.group(1) for c in candidates if (m := re.match(r"^(\d+)(?=\D)", c.case_id)))
        shared = [k for k, n in leading.items() if n > 1]
        if shared:
            problems.append(Problem(WARNING, root, f"{len(shared)} groups of case names share a leading number "
                                    f"(e.g. {shared[0]}...); if those are the same subject, pass --subject-pattern "
                                    "'^(\\d+)' (or set subject_pattern in labels.json) so splits keep them together"))
    return subjects
