"""Quality -> preset: the Train panel offers a quality instead of preset names.

The user picks *Quick*, *Standard* or *Thorough*; each maps to the first backend preset of its
list that the server offers (``/info``'s ``presets``):

========== ============================ =====================================================
quality    presets, in preference order  meant for
========== ============================ =====================================================
Quick      ``cpu-small``, ``tiny``        minutes to an hour on a laptop CPU; a first model
Standard   ``standard``, ``cpu-small``    an hour or two on a GPU (ViT-Tiny student at 256 px)
Thorough   ``gpu``, ``standard``          several hours on a recent GPU (teacher at 512 px)
========== ============================ =====================================================

Any other preset the server offers (``tiny``, for demonstrations on phantoms, or the server's own)
can be chosen by name as well (:func:`presetChoices`).
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

__all__ = ["QUALITIES", "QUALITY_PRESETS", "TrainingProblem", "presetForQuality", "presetChoices"]

QUALITIES = ("quick", "standard", "thorough")
QUALITY_PRESETS = {
    "quick": ("cpu-small", "tiny"),
    "standard": ("standard", "cpu-small"),
    "thorough": ("gpu", "standard"),
}
_QUALITY_TITLES = {"quick": "Quick", "standard": "Standard", "thorough": "Thorough"}


class TrainingProblem(Exception):
    """Training cannot start as asked; the message says why."""


def presetForQuality(quality: str, available: Sequence[str]) -> str:
    """The backend preset for a quality (see the module docstring).

    Args:
        quality: ``"quick"``, ``"standard"`` or ``"thorough"``.
        available: the server's presets (empty: unknown, the first choice is returned).

    Raises:
        ValueError: unknown quality.
        TrainingProblem: the server offers none of the quality's presets.
    """
    if quality not in QUALITY_PRESETS:
        raise ValueError("quality must be one of {}, got {!r}".format(", ".join(QUALITIES), quality))
    candidates = QUALITY_PRESETS[quality]
    if not available:
        return candidates[0]
    for name in candidates:
        if name in available:
            return name
    raise TrainingProblem("The backend offers none of the presets for '{}' ({}); it has: {}.".format(
        _QUALITY_TITLES[quality], ", ".join(candidates), ", ".join(available)))


def presetChoices(available: Sequence[str], device: str = "cpu") -> List[Tuple[str, str, str]]:
    """Entries of the preset chooser: ``(title, preset, tooltip)``, qualities first, then other presets.

    A quality whose preset is meant for a GPU says so in its tooltip when the backend has none.
    """
    out, used = [], set()
    for quality in QUALITIES:
        try:
            preset = presetForQuality(quality, available)
        except TrainingProblem:
            continue
        tip = "Backend preset '{}'.".format(preset)
        if device == "cpu" and preset in ("standard", "gpu"):
            tip += " Meant for a GPU: on this backend's CPU it takes many hours."
        out.append(("{} ({})".format(_QUALITY_TITLES[quality], preset), preset, tip))
        used.add(preset)
    for preset in available:
        if preset not in used:
            tip = "For demonstrations on phantoms only: far too small for real data." if preset == "tiny" else ""
            out.append(("Preset: {}".format(preset), preset, tip))
    return out
