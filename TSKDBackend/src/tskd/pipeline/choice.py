"""The run's choice between the distilled student and the supervised reference, and the one line
that tells a clinician what it means.

Both students are exported and scored on the validation volumes exactly as the package is scored
(:func:`tskd.pipeline.export_stage.validate_package`: the ONNX student, slice by slice, Dice at full
resolution in the volume's own geometry). The rule (docs/architecture.md, "The supervised
reference"):

- the reference is exported only when its validation Dice is higher; a tie keeps the distilled
  student (``decided_on: "validation"``);
- with fewer validation subjects than ``reference.min_val_subjects`` the same rule is applied, but
  ``decided_on`` is ``"too_few_validation_subjects"`` and a warning says the choice is uncertain;
- with no validation volume there is nothing to compare: the distilled student is exported
  (``decided_on: "no_validation"``) and the warning says so;
- with the reference turned off the distilled student is exported (``decided_on: "reference_disabled"``).

:func:`verdict` makes the one line; the summary, the report, the console table, the package's
metadata and (through it) the service and Slicer all show that same stored line.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

__all__ = ["KINDS", "compare_students", "verdict"]

#: The two kinds of student a run can export.
KINDS = ("distilled", "reference")


def _score(validation: Mapping[str, Any] | None) -> Optional[float]:
    value = (validation or {}).get("mean_dice")
    if isinstance(value, (int, float)) and value == value:  # not NaN
        return float(value)
    return None


def compare_students(
    distilled: Mapping[str, Any] | None,
    reference: Mapping[str, Any] | None,
    *,
    val_subjects: int,
    min_val_subjects: int = 3,
    foundation_weights: bool = False,
    enabled: bool = True,
) -> dict[str, Any]:
    """Choose between the distilled student and the reference from their validation scores.

    Args:
        distilled: the distilled package's volume validation (``mean_dice``, ``n_cases``...), or
            None / {} without validation volumes.
        reference: the same for the reference (ignored when ``enabled`` is False).
        val_subjects: how many validation subjects the scores come from.
        min_val_subjects: fewer than this and the choice is flagged as uncertain.
        foundation_weights: the teacher started from foundation weights (changes the advice).
        enabled: the reference was trained.

    Returns:
        ``{"distilled": {"val_dice"}, "reference": {"val_dice"} or None, "chosen", "decided_on",
        "val_subjects", "warning", "foundation_weights", "verdict"}``.
    """
    if val_subjects < 0:
        raise ValueError(f"val_subjects must be >= 0, got {val_subjects}")
    d, r = _score(distilled), _score(reference) if enabled else None
    result: dict[str, Any] = {
        "distilled": {"val_dice": d},
        "reference": {"val_dice": r} if enabled else None,
        "val_subjects": int(val_subjects),
        "foundation_weights": bool(foundation_weights),
        "warning": None,
    }
    if not enabled:
        result.update(chosen="distilled", decided_on="reference_disabled")
    elif d is None or r is None or val_subjects == 0:
        result.update(chosen="distilled", decided_on="no_validation",
                      warning="no validation subject: the distilled student could not be compared with the "
                              "labels-only one and was exported unchecked; keep at least "
                              f"{min_val_subjects} labelled subjects for validation (data.val_fraction)")
    else:
        result["chosen"] = "reference" if r > d else "distilled"
        if val_subjects < min_val_subjects:
            result["decided_on"] = "too_few_validation_subjects"
            result["warning"] = (f"only {val_subjects} validation subject{'s' if val_subjects != 1 else ''}: "
                                 f"too few to tell the two students apart (at least {min_val_subjects} needed); "
                                 "the one with the higher validation Dice was exported")
        else:
            result["decided_on"] = "validation"
    result["verdict"] = verdict(result)
    return result


def verdict(comparison: Mapping[str, Any]) -> str:
    """The one line a clinician reads: which student was exported and what distillation added.

    Args:
        comparison: :func:`compare_students`'s result.
    """
    decided = comparison.get("decided_on")
    d = (comparison.get("distilled") or {}).get("val_dice")
    r = (comparison.get("reference") or {}).get("val_dice")
    foundation = bool(comparison.get("foundation_weights"))
    if decided == "reference_disabled":
        return "TS-KD student exported; it was not compared with training on the labels alone (reference disabled)"
    if decided == "no_validation":
        return ("TS-KD student exported without a check: there were no validation subjects to compare it with "
                "training on the labels alone")
    gain = d - r
    if comparison.get("chosen") == "distilled":
        source = "the foundation model" if foundation else "distillation from a teacher without foundation weights"
        line = f"TS-KD student {d:.3f} vs labels only {r:.3f}: {source} added {gain:+.3f} Dice"
    else:
        line = (f"the distilled student was not better than training on the labels alone ({d:.3f} vs {r:.3f}), "
                "so the labels-only student was exported")
        if not foundation:
            line += "; a foundation model (MedSAM) is what makes distillation pay"
    if decided == "too_few_validation_subjects":
        n = comparison.get("val_subjects", 0)
        line += f" (only {n} validation subject{'s' if n != 1 else ''}: too few to be sure)"
    return line
