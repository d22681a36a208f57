"""Adapting pretrained SAM weights to a new input size and to ``K`` classes, once, at load time.

Input size. SAM's ViT adds an absolute position embedding ``(1, 64, 64, C)`` for its native
1024 px input (64 x 64 patches), and each *global*-attention block keeps relative-position tables
``(2 * 64 - 1, head_dim)``. For an input of ``S`` pixels the grid is ``S / 16``: the absolute
embedding is resized bilinearly to ``(1, S/16, S/16, C)`` and the global blocks' tables linearly
to ``2 * S/16 - 1`` rows (as SAMed does). Windowed blocks keep theirs: their window does not
depend on the input size.

Classes. SAM's decoder has 4 mask tokens (one single-mask token and 3 multimask tokens), each with
its own output hypernetwork MLP, and an IoU head with 4 outputs. A ``K``-class decoder needs
``K + 1`` of each. Token ``j`` of the new decoder starts as a copy of pretrained token
``j mod 4`` (likewise its hypernetwork MLP and IoU output row): every class starts from a mask
head SAM already trained, and training then specialises them. Pretrained heads beyond ``K + 1``
(only when ``K < 3``) are dropped.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

__all__ = ["resize_abs_pos", "resize_rel_pos", "resize_position_tables", "adapt_mask_tokens"]

_HYPER = re.compile(r"^mask_decoder\.output_hypernetworks_mlps\.(\d+)\.(.+)$")


def resize_abs_pos(pos_embed: torch.Tensor, grid: int) -> torch.Tensor:
    """Resize an absolute position embedding ``(1, G, G, C)`` to ``(1, grid, grid, C)`` (bilinear)."""
    if pos_embed.ndim != 4 or pos_embed.shape[1] != pos_embed.shape[2]:
        raise ValueError(f"expected a position embedding (1, G, G, C), got {tuple(pos_embed.shape)}")
    if pos_embed.shape[1] == grid:
        return pos_embed
    channels_first = pos_embed.permute(0, 3, 1, 2).float()
    resized = F.interpolate(channels_first, size=(grid, grid), mode="bilinear", align_corners=False)
    return resized.permute(0, 2, 3, 1).contiguous().to(pos_embed.dtype)


def resize_rel_pos(table: torch.Tensor, rows: int) -> torch.Tensor:
    """Resize a relative-position table ``(L, head_dim)`` to ``(rows, head_dim)`` (linear)."""
    if table.ndim != 2:
        raise ValueError(f"expected a relative-position table (L, head_dim), got {tuple(table.shape)}")
    if table.shape[0] == rows:
        return table
    resized = F.interpolate(table.float().t()[None], size=rows, mode="linear", align_corners=False)
    return resized[0].t().contiguous().to(table.dtype)


def resize_position_tables(
    state: dict[str, torch.Tensor], *, global_attn_indexes: tuple[int, ...] | list[int], grid: int
) -> list[str]:
    """Resize, in place, the position tables of a ``transformers``-layout state dict to ``grid``.

    Args:
        state: SAM weights in the ``transformers`` layout.
        global_attn_indexes: the blocks with global attention (their tables depend on the grid).
        grid: target number of patches per side (``input_size / 16``).

    Returns:
        the keys that were resized.
    """
    changed = []
    key = "vision_encoder.pos_embed"
    if key in state and state[key].ndim == 4 and state[key].shape[1] != grid:
        state[key] = resize_abs_pos(state[key], grid)
        changed.append(key)
    for index in global_attn_indexes:
        for axis in ("h", "w"):
            key = f"vision_encoder.layers.{index}.attn.rel_pos_{axis}"
            if key in state and state[key].ndim == 2 and state[key].shape[0] != 2 * grid - 1:
                state[key] = resize_rel_pos(state[key], 2 * grid - 1)
                changed.append(key)
    return changed


def adapt_mask_tokens(state: dict[str, torch.Tensor], num_tokens: int) -> bool:
    """Give a ``transformers``-layout decoder ``num_tokens`` mask tokens by cyclic copying, in place.

    Args:
        state: SAM weights in the ``transformers`` layout.
        num_tokens: wanted number of mask tokens (``K + 1``).

    Returns:
        ``True`` if the decoder was changed, ``False`` if it already had ``num_tokens`` tokens or
        holds no mask tokens (the strict check then reports the missing keys).
    """
    tokens = state.get("mask_decoder.mask_tokens.weight")
    if tokens is None or tokens.ndim != 2 or tokens.shape[0] == num_tokens:
        return False
    pretrained = tokens.shape[0]
    source = [j % pretrained for j in range(num_tokens)]
    state["mask_decoder.mask_tokens.weight"] = tokens[source].clone()

    hyper: dict[int, dict[str, torch.Tensor]] = {}
    for key in list(state):
        match = _HYPER.match(key)
        if match and int(match.group(1)) < pretrained:
            hyper.setdefault(int(match.group(1)), {})[match.group(2)] = state.pop(key)
    for j, i in enumerate(source):
        for leaf, value in hyper.get(i, {}).items():
            state[f"mask_decoder.output_hypernetworks_mlps.{j}.{leaf}"] = value.clone()

    for leaf in ("weight", "bias"):
        key = f"mask_decoder.iou_prediction_head.proj_out.{leaf}"
        if key in state and state[key].shape[0] == pretrained:
            state[key] = state[key][source].clone()
    return True
