"""Settings of ``tskd suggest``: the single source of its defaults (torch-free)."""

from __future__ import annotations

from dataclasses import dataclass

from tskd.config.base import ConfigBase

__all__ = ["SuggestConfig"]


@dataclass
class SuggestConfig(ConfigBase):
    """How slices are scored and how the suggestions are picked.

    Each slice's score is ``(1 - teacher_weight) * entropy + teacher_weight * disagreement`` when a
    teacher takes part, else ``entropy`` (both terms lie in 0..1, so the score does too):

    * ``entropy``: the student's softmax entropy divided by ``log K``, averaged over the slice's
      pixels (0: certain everywhere, 1: uniform over the K classes everywhere);
    * ``disagreement``: the total-variation distance between the teacher's and the student's class
      probabilities (``0.5 * sum_k |p_k - q_k|``), averaged over the slice's pixels.

    The disagreement is a distance per pixel rather than ``1 - soft Dice`` of the foreground
    masks: on slices that cut a structure's tip (a few pixels of it) the soft Dice of two
    reasonable models swings between 0 and 1, and on phantoms it ranked those end slices of
    ordinary cases above a case with ten times the noise; the per-pixel distance does not.

    Args:
        top: number of suggestions (slices) to return.
        max_per_case: at most this many suggestions from one case.
        neighbour_slices: a chosen slice penalises the slices up to this many positions away from
            it in the same case (k).
        neighbour_penalty: factor a neighbour's score is multiplied by, once per chosen slice within
            ``neighbour_slices`` of it (0: neighbours are never chosen, 1: no diversity term).
        teacher_weight: weight of the teacher-student disagreement in the score (0..1).
        case_top_slices: a case's score is the mean of its this many best slice scores.
        batch_size: slices per model call.
    """

    top: int = 10
    max_per_case: int = 3
    neighbour_slices: int = 3
    neighbour_penalty: float = 0.25
    teacher_weight: float = 0.5
    case_top_slices: int = 3
    batch_size: int = 16

    def __post_init__(self) -> None:
        for name in ("top", "max_per_case", "case_top_slices", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.neighbour_slices < 0:
            raise ValueError(f"neighbour_slices must not be negative, got {self.neighbour_slices}")
        if not 0.0 <= self.neighbour_penalty <= 1.0:
            raise ValueError(f"neighbour_penalty must lie in 0..1, got {self.neighbour_penalty}")
        if not 0.0 <= self.teacher_weight <= 1.0:
            raise ValueError(f"teacher_weight must lie in 0..1, got {self.teacher_weight}")
