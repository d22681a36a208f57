"""Folding mask pixels (grey 0/255 masks, RGB colour masks) into integer label values.

People save masks as pictures: a white head on black (HC18: RGB, values 0 and 255), or one colour
per structure. Training needs label values 0, 1, 2...; this module decides how raw pixels map to
values (:func:`plan_fold`) and applies it (:func:`apply_fold`).

Rules (``table`` = the dataset's declared :class:`~tskd.data.labels.LabelTable`, if any):

- grey pixels (and colour pixels with r == g == b) keep their value, except that a mask whose only
  foreground value is ``v`` (e.g. 255) becomes ``{0, 1}`` when ``v`` is not declared (or, with a
  declared table of one foreground label, that label's value);
- colours match the table's declared colours (within 2/255 per channel), else the default palette,
  else they get values 1, 2, ... in sorted colour order. The last case depends on which colours a
  file holds, so a fold decided from one file is marked ``guessed``; datasets decide once from all
  files instead.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tskd.data.labels import DEFAULT_PALETTE, LabelTable
from tskd.errors import DataError

__all__ = ["LabelFold", "mask_values", "plan_fold", "apply_fold", "fold_label_array", "unique_values"]

logger = logging.getLogger(__name__)

Color = tuple[int, int, int]
_TOLERANCE = 2


@dataclass
class LabelFold:
    """How raw mask pixels become label values.

    Args:
        values: raw grey value -> label value (values not listed are kept).
        colors: raw RGB colour -> label value (every colour in a mask must be listed).
        guessed: the mapping was decided from the colours or values of one file only, so another
            file may be folded differently; a dataset-wide fold avoids that.
    """

    values: dict[int, int] = field(default_factory=dict)
    colors: dict[Color, int] = field(default_factory=dict)
    guessed: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "values": {str(k): v for k, v in sorted(self.values.items())},
            "colors": {_color_key(c): v for c, v in sorted(self.colors.items())},
            "guessed": self.guessed,
        }

    def map_values(self, grey: set[int], colors: set[Color]) -> set[int]:
        """The label values that raw ``grey`` values and ``colors`` fold to."""
        out = {self.values.get(v, v) for v in grey}
        out |= {self.colors[c] for c in colors if c in self.colors}
        return out


def _color_key(color: Color) -> str:
    return ",".join(str(int(c)) for c in color)


def _split_channels(array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB ``(..., 3)``, grey-like mask and transparent mask from ``(..., C)`` pixels, C in 2..4."""
    channels = array.shape[-1]
    if channels not in (2, 3, 4):
        raise ValueError(f"expected 2, 3 or 4 channels on the last axis, got {channels}")
    if channels == 2:
        rgb = np.repeat(array[..., :1], 3, axis=-1)
    else:
        rgb = array[..., :3]
    transparent = array[..., -1] == 0 if channels in (2, 4) else np.zeros(array.shape[:-1], bool)
    grey_like = (rgb[..., 0] == rgb[..., 1]) & (rgb[..., 1] == rgb[..., 2])
    return rgb, grey_like, transparent


def unique_values(values: np.ndarray) -> set[int]:
    """The distinct integer values of an array (fast for 8- and 16-bit data)."""
    if values.size == 0:
        return set()
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    if values.dtype in (np.uint8, np.uint16):
        return {int(v) for v in np.flatnonzero(np.bincount(values.ravel()))}
    return {int(v) for v in np.unique(values)}


def _codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 32) | (rgb[..., 1] << 16) | rgb[..., 2]


def _decode(code: int) -> Color:
    return (int(code >> 32), int((code >> 16) & 0xFFFF), int(code & 0xFFFF))


def mask_values(array: np.ndarray, *, channels: bool) -> tuple[set[int], set[Color]]:
    """The raw grey values and (non-grey) colours in a mask.

    Args:
        array: ``(k, j, i)``/``(j, i)`` integer values, or with a last channel axis when ``channels``.
        channels: the last axis holds grey+alpha, RGB or RGBA.

    Returns:
        ``(grey values, colours)``; transparent pixels count as grey 0.
    """
    if not channels:
        if array.dtype.kind == "f":
            finite = array[np.isfinite(array)]
            return {int(v) for v in np.unique(finite) if float(v).is_integer()}, set()
        return unique_values(array), set()
    rgb, grey_like, transparent = _split_channels(array)
    grey = unique_values(rgb[..., 0][grey_like & ~transparent])
    if transparent.any():
        grey.add(0)
    colour = ~grey_like & ~transparent
    colors = {_decode(c) for c in np.unique(_codes(rgb[colour]))} if colour.any() else set()
    return grey, colors


def _to_255(color: tuple[float, float, float]) -> Color:
    return tuple(int(round(c * 255)) for c in color)  # type: ignore[return-value]


def _match(color: Color, candidates: dict[Color, int]) -> int | None:
    for candidate, value in candidates.items():
        if all(abs(a - b) <= _TOLERANCE for a, b in zip(color, candidate)):
            return value
    return None


def plan_fold(grey: set[int], colors: set[Color], table: LabelTable | None = None) -> LabelFold:
    """Decide how raw values and colours map to label values (rules in the module docstring).

    Args:
        grey: raw grey values present (from :func:`mask_values`, of one file or a whole dataset).
        colors: raw non-grey colours present.
        table: the declared label table, if any (a table with ``declared=False`` is ignored).
    """
    table = table if table is not None and table.declared else None
    declared = set(table.values) if table else None
    fold = LabelFold()
    foreground = set(grey) - {0}

    pool = set(colors)
    if colors:  # grey-like colours (white...) next to true colours are colours too
        pool |= {(v, v, v) for v in foreground if declared is None or v not in declared}
    if pool:
        declared_colors = {_to_255(c): v for v, c in table.colors().items()} if table else {}
        remaining = []
        for color in sorted(pool):
            value = _match(color, declared_colors)
            if value is None:
                remaining.append(color)
            else:
                fold.colors[color] = value
        if remaining and table and len(table.foreground_values) == 1 and len(pool) == 1:
            fold.colors[remaining.pop()] = table.foreground_values[0]
        if remaining:
            palette = {_to_255(c): i + 1 for i, c in enumerate(DEFAULT_PALETTE)}
            matched = {c: _match(c, palette) for c in remaining}
            taken = set(fold.colors.values()) | {v for v in foreground if (v, v, v) not in pool}
            distinct = len(set(matched.values())) == len(remaining)
            if distinct and all(v is not None and v not in taken for v in matched.values()):
                fold.colors.update(matched)  # type: ignore[arg-type]
            else:
                used = set(fold.colors.values()) | {v for v in foreground if (v, v, v) not in pool}
                used |= {v for v in (declared or set()) if table and v in table.colors()}
                value = 0
                for color in remaining:
                    value += 1
                    while value in used:
                        value += 1
                    fold.colors[color] = value
                fold.guessed = True
        for v in foreground:
            if (v, v, v) in fold.colors:
                fold.values[v] = fold.colors.pop((v, v, v))
    elif len(foreground) == 1:
        (v,) = foreground
        if declared is not None:
            if v not in declared and len(table.foreground_values) == 1:  # type: ignore[union-attr]
                fold.values[v] = table.foreground_values[0]  # type: ignore[union-attr]
        elif v != 1:
            fold.values[v] = 1
            fold.guessed = v != 255
    return fold


def apply_fold(array: np.ndarray, fold: LabelFold, *, channels: bool, where: str = "mask") -> np.ndarray:
    """Label values from raw mask pixels.

    Args:
        array: as in :func:`mask_values`.
        fold: from :func:`plan_fold`.
        channels: the last axis holds grey+alpha, RGB or RGBA.
        where: the file, for messages.

    Returns:
        Integer label map, shape ``array.shape`` (without the channel axis).

    Raises:
        DataError: a colour that ``fold`` does not map.
    """
    if not channels:
        if not fold.values:
            return array
        out = array.astype(np.int64 if array.dtype.kind == "f" else np.result_type(array.dtype, np.int32), copy=True)
        for raw, value in fold.values.items():
            out[array == raw] = value
        return out
    rgb, grey_like, transparent = _split_channels(array)
    out = rgb[..., 0].astype(np.int32)
    out[transparent] = 0
    for raw, value in fold.values.items():
        out[grey_like & (rgb[..., 0] == raw) & ~transparent] = value
    colour = ~grey_like & ~transparent
    if colour.any():
        codes, inverse = np.unique(_codes(rgb[colour]), return_inverse=True)
        lookup = np.zeros(len(codes), np.int32)
        for i, code in enumerate(codes):
            color = _decode(int(code))
            value = fold.colors.get(color)
            if value is None:
                value = _match(color, fold.colors)
            if value is None:
                known = ", ".join(f"({_color_key(c)})={v}" for c, v in sorted(fold.colors.items())) or "none"
                raise DataError(
                    f"{where}: colour ({_color_key(color)}) is not one of the dataset's label colours ({known}); "
                    "declare each colour in labels.json"
                )
            lookup[i] = value
        out[colour] = lookup[inverse.ravel()]
    return out


def fold_label_array(
    array: np.ndarray,
    *,
    channels: bool,
    table: LabelTable | None = None,
    fold: LabelFold | None = None,
    where: str = "mask",
) -> tuple[np.ndarray, dict[str, Any]]:
    """Fold one mask to label values, deciding from this file alone unless ``fold`` is given.

    Args:
        array: integer pixels ``(k, j, i)``/``(j, i)``, or with a last channel axis when ``channels``.
        channels: the last axis holds grey+alpha, RGB or RGBA.
        table: the declared label table, if any.
        fold: a fold decided for the whole dataset (then ``table`` is not consulted).
        where: the file, for messages.

    Returns:
        ``(labels, metadata)``: metadata records what was done: ``rgb_folded`` (colour -> value, for
        colour input), ``values_folded`` (raw grey value -> value), ``fold_guessed``.
    """
    if fold is None:
        grey, colors = mask_values(array, channels=channels)
        fold = plan_fold(grey, colors, table)
    labels = apply_fold(array, fold, channels=channels, where=where)
    info: dict[str, Any] = {}
    if channels:
        mapping = {_color_key((v, v, v)): value for v, value in fold.values.items()}
        mapping.update({_color_key(c): value for c, value in fold.colors.items()})
        info["rgb_folded"] = mapping
    elif fold.values:
        info["values_folded"] = {str(k): v for k, v in fold.values.items()}
    if fold.guessed:
        info["fold_guessed"] = True
        logger.debug("%s: label values of a mask decided from this file alone: %s", where, fold.to_dict())
    return labels, info
