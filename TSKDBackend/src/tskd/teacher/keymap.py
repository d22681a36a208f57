"""Weight names: Meta's official SAM layout -> the ``transformers`` ``SamModel`` layout.

The official checkpoints (``sam_vit_{b,l,h}_*.pth``, ``medsam_vit_b.pth``) store the state dict
of segment-anything's ``Sam`` module: ``image_encoder.*`` (``blocks.N.norm1``, ``neck.0`` ...),
``prompt_encoder.*`` (``pe_layer``, ``mask_downscaling.0`` ...) and ``mask_decoder.*``
(``output_upscaling.0``, ``MLP.layers.N`` ...). ``transformers`` names the same tensors
differently (``vision_encoder.layers.N.layer_norm1``, ``neck.conv1``, ``mask_embed.conv1``,
``upscale_conv1``, ``proj_in``/``layers``/``proj_out``). The shapes are the same; only the names
change, plus one tensor (the random Fourier matrix of the prompt encoder) that ``transformers``
keeps twice, tied.

LiteMedSAM's ``lite_medsam.pth`` has the same prompt encoder and mask decoder and a TinyViT image
encoder (``image_encoder.patch_embed.seq.*``, ``image_encoder.layers.*``, ``image_encoder.neck.*``);
:class:`tskd.teacher.tiny_vit.TinyViTEncoder` keeps those names under ``vision_encoder.`` and names
its neck like ``transformers``' SAM neck, so the same rules rename it.

Keys that match no rule are passed through unchanged so that the strict check of the loader
reports them by name.
"""

from __future__ import annotations

import re
from typing import Mapping

import torch

__all__ = [
    "OFFICIAL_PREFIXES",
    "HF_PREFIXES",
    "POSITIONAL_KEY",
    "TIED_POSITIONAL_KEY",
    "key_layout",
    "official_to_hf",
    "fill_tied_keys",
]

OFFICIAL_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
HF_PREFIXES = ("vision_encoder.", "prompt_encoder.", "mask_decoder.", "shared_image_embedding.")
POSITIONAL_KEY = "shared_image_embedding.positional_embedding"
TIED_POSITIONAL_KEY = "prompt_encoder.shared_embedding.positional_embedding"
_OFFICIAL_GAUSSIAN = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"

# (pattern, replacement) applied in order; the first match wins.
_RULES: list[tuple[re.Pattern[str], str]] = [
    (re.compile(p), r)
    for p, r in [
        # image encoder
        (r"^image_encoder\.patch_embed\.proj\.", "vision_encoder.patch_embed.projection."),
        # LiteMedSAM's TinyViT (tskd.teacher.tiny_vit keeps the checkpoint's names; its neck is SAM's)
        (r"^image_encoder\.(patch_embed\.seq|layers)\.", r"vision_encoder.\1."),
        (r"^image_encoder\.pos_embed$", "vision_encoder.pos_embed"),
        (r"^image_encoder\.blocks\.(\d+)\.norm1\.", r"vision_encoder.layers.\1.layer_norm1."),
        (r"^image_encoder\.blocks\.(\d+)\.norm2\.", r"vision_encoder.layers.\1.layer_norm2."),
        (r"^image_encoder\.blocks\.(\d+)\.attn\.(qkv|proj)\.", r"vision_encoder.layers.\1.attn.\2."),
        (r"^image_encoder\.blocks\.(\d+)\.attn\.(rel_pos_[hw])$", r"vision_encoder.layers.\1.attn.\2"),
        (r"^image_encoder\.blocks\.(\d+)\.mlp\.(lin[12])\.", r"vision_encoder.layers.\1.mlp.\2."),
        (r"^image_encoder\.neck\.0\.", "vision_encoder.neck.conv1."),
        (r"^image_encoder\.neck\.1\.", "vision_encoder.neck.layer_norm1."),
        (r"^image_encoder\.neck\.2\.", "vision_encoder.neck.conv2."),
        (r"^image_encoder\.neck\.3\.", "vision_encoder.neck.layer_norm2."),
        # prompt encoder
        (r"^prompt_encoder\.point_embeddings\.(\d+)\.", r"prompt_encoder.point_embed.\1."),
        (r"^prompt_encoder\.(not_a_point_embed|no_mask_embed)\.", r"prompt_encoder.\1."),
        (r"^prompt_encoder\.mask_downscaling\.0\.", "prompt_encoder.mask_embed.conv1."),
        (r"^prompt_encoder\.mask_downscaling\.1\.", "prompt_encoder.mask_embed.layer_norm1."),
        (r"^prompt_encoder\.mask_downscaling\.3\.", "prompt_encoder.mask_embed.conv2."),
        (r"^prompt_encoder\.mask_downscaling\.4\.", "prompt_encoder.mask_embed.layer_norm2."),
        (r"^prompt_encoder\.mask_downscaling\.6\.", "prompt_encoder.mask_embed.conv3."),
        # mask decoder: two-way transformer
        (r"^mask_decoder\.transformer\.layers\.(\d+)\.norm([1-4])\.", r"mask_decoder.transformer.layers.\1.layer_norm\2."),
        (
            r"^mask_decoder\.transformer\.layers\.(\d+)\."
            r"(self_attn|cross_attn_token_to_image|cross_attn_image_to_token)\.(q_proj|k_proj|v_proj|out_proj)\.",
            r"mask_decoder.transformer.layers.\1.\2.\3.",
        ),
        (r"^mask_decoder\.transformer\.layers\.(\d+)\.mlp\.(lin[12])\.", r"mask_decoder.transformer.layers.\1.mlp.\2."),
        (
            r"^mask_decoder\.transformer\.final_attn_token_to_image\.(q_proj|k_proj|v_proj|out_proj)\.",
            r"mask_decoder.transformer.final_attn_token_to_image.\1.",
        ),
        (r"^mask_decoder\.transformer\.norm_final_attn\.", "mask_decoder.transformer.layer_norm_final_attn."),
        # mask decoder: tokens and output upscaling
        (r"^mask_decoder\.(iou_token|mask_tokens)\.", r"mask_decoder.\1."),
        (r"^mask_decoder\.output_upscaling\.0\.", "mask_decoder.upscale_conv1."),
        (r"^mask_decoder\.output_upscaling\.1\.", "mask_decoder.upscale_layer_norm."),
        (r"^mask_decoder\.output_upscaling\.3\.", "mask_decoder.upscale_conv2."),
    ]
]

# segment-anything's MLP keeps all its Linear layers in ``layers``; transformers splits off the first
# (``proj_in``) and the last (``proj_out``) and keeps the middle ones in ``layers``.
_MLP = re.compile(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.(\d+)\.(weight|bias)$")


def key_layout(keys: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """``"official"``, ``"hf"`` or ``None`` (neither) for a collection of state-dict keys."""
    keys = list(keys)
    if any(k.startswith("image_encoder.") for k in keys):
        return "official"
    if any(k.startswith("vision_encoder.") for k in keys):
        return "hf"
    return None


def official_to_hf(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an official SAM state dict to the ``transformers`` layout (tensors are not copied).

    Args:
        state: tensors keyed by segment-anything's names.

    Returns:
        tensors keyed by :class:`transformers.SamModel` names, the positional matrix under both of
        its tied names; unknown keys unchanged.
    """
    depth: dict[str, int] = {}
    for key in state:
        match = _MLP.match(key)
        if match:
            depth[match.group(1)] = max(depth.get(match.group(1), 0), int(match.group(2)) + 1)
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        out[_rename(key, depth)] = value
    if _OFFICIAL_GAUSSIAN in state:
        out.pop(_OFFICIAL_GAUSSIAN, None)
        out[POSITIONAL_KEY] = state[_OFFICIAL_GAUSSIAN]
        out[TIED_POSITIONAL_KEY] = state[_OFFICIAL_GAUSSIAN]
    return out


def _rename(key: str, mlp_depth: dict[str, int]) -> str:
    match = _MLP.match(key)
    if match:
        prefix, index, leaf = match.group(1), int(match.group(2)), match.group(3)
        last = mlp_depth[prefix] - 1
        if index == 0:
            return f"{prefix}.proj_in.{leaf}"
        if index == last:
            return f"{prefix}.proj_out.{leaf}"
        return f"{prefix}.layers.{index - 1}.{leaf}"
    for pattern, replacement in _RULES:
        new, count = pattern.subn(replacement, key, count=1)
        if count:
            return new
    return key


def fill_tied_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Make sure both tied names of the positional matrix are present (Hugging Face files keep one)."""
    if POSITIONAL_KEY in state and TIED_POSITIONAL_KEY not in state:
        state[TIED_POSITIONAL_KEY] = state[POSITIONAL_KEY]
    elif TIED_POSITIONAL_KEY in state and POSITIONAL_KEY not in state:
        state[POSITIONAL_KEY] = state[TIED_POSITIONAL_KEY]
    return state
