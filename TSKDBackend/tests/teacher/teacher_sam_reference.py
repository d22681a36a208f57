"""Test helpers: segment-anything's module *naming*, restated independently of tskd's key mapping.

``OfficialSam`` mirrors the structure of segment-anything's ``Sam`` (``image_encoder``,
``prompt_encoder``, ``mask_decoder`` and their submodules, with the same attribute names and
``nn.Sequential`` indices), parameters only (no forward pass). A state dict that loads strictly
into it has the official key names and shapes. ``hf_to_official`` renames a ``transformers``
SamModel state dict the other way round from tskd's loader, written separately here so that the
loader's mapping is really tested; ``write_official_checkpoint`` saves a model's weights as a file
in Meta's layout (the tests' checkpoint writer, also used by ``benchmarks/gpu_check.py``).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

__all__ = ["OfficialSam", "hf_to_official", "write_official_checkpoint"]


class LayerNorm2d(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))


class MLPBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.lin1 = nn.Linear(dim, mlp_dim)
        self.lin2 = nn.Linear(mlp_dim, dim)


class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=16, stride=16)


class ViTAttention(nn.Module):
    def __init__(self, dim: int, heads: int, rel_size: int) -> None:
        super().__init__()
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.rel_pos_h = nn.Parameter(torch.zeros(2 * rel_size - 1, dim // heads))
        self.rel_pos_w = nn.Parameter(torch.zeros(2 * rel_size - 1, dim // heads))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, rel_size: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ViTAttention(dim, heads, rel_size)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, 4 * dim)


class ImageEncoderViT(nn.Module):
    def __init__(self, dim, depth, heads, global_idx, window, grid, out_chans) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(dim)
        self.pos_embed = nn.Parameter(torch.zeros(1, grid, grid, dim))
        self.blocks = nn.ModuleList(
            Block(dim, heads, grid if i in global_idx else window) for i in range(depth)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(dim, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )


class PositionEmbeddingRandom(nn.Module):
    def __init__(self, num_pos_feats: int) -> None:
        super().__init__()
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn((2, num_pos_feats)))


class PromptEncoder(nn.Module):
    def __init__(self, embed_dim: int, mask_in_chans: int) -> None:
        super().__init__()
        self.pe_layer = PositionEmbeddingRandom(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(4))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        self.no_mask_embed = nn.Embedding(1, embed_dim)


class DecoderAttention(nn.Module):
    def __init__(self, dim: int, downsample_rate: int = 1) -> None:
        super().__init__()
        inner = dim // downsample_rate
        self.q_proj = nn.Linear(dim, inner)
        self.k_proj = nn.Linear(dim, inner)
        self.v_proj = nn.Linear(dim, inner)
        self.out_proj = nn.Linear(inner, dim)


class TwoWayAttentionBlock(nn.Module):
    def __init__(self, dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.self_attn = DecoderAttention(dim)
        self.norm1 = nn.LayerNorm(dim)
        self.cross_attn_token_to_image = DecoderAttention(dim, 2)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLPBlock(dim, mlp_dim)
        self.norm3 = nn.LayerNorm(dim)
        self.norm4 = nn.LayerNorm(dim)
        self.cross_attn_image_to_token = DecoderAttention(dim, 2)


class TwoWayTransformer(nn.Module):
    def __init__(self, depth: int, dim: int, mlp_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(TwoWayAttentionBlock(dim, mlp_dim) for _ in range(depth))
        self.final_attn_token_to_image = DecoderAttention(dim, 2)
        self.norm_final_attn = nn.LayerNorm(dim)


class MLP(nn.Module):
    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int, num_layers: int) -> None:
        super().__init__()
        h = [hidden_dim] * (num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(n, k) for n, k in zip([input_dim] + h, h + [output_dim]))


class MaskDecoder(nn.Module):
    def __init__(self, dim: int, mlp_dim: int, depth: int, num_multimask_outputs: int, iou_hidden: int) -> None:
        super().__init__()
        self.transformer = TwoWayTransformer(depth, dim, mlp_dim)
        self.iou_token = nn.Embedding(1, dim)
        self.num_mask_tokens = num_multimask_outputs + 1
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(dim, iou_hidden, self.num_mask_tokens, 3)


class OfficialSam(nn.Module):
    """segment-anything's ``Sam`` layout; pixel mean/std are non-persistent buffers (not in checkpoints)."""

    def __init__(self, *, dim, depth, heads, global_idx, window, grid, out_chans, mask_in_chans, dec_mlp, iou_hidden):
        super().__init__()
        self.image_encoder = ImageEncoderViT(dim, depth, heads, global_idx, window, grid, out_chans)
        self.prompt_encoder = PromptEncoder(out_chans, mask_in_chans)
        self.mask_decoder = MaskDecoder(out_chans, dec_mlp, 2, 3, iou_hidden)
        self.register_buffer("pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), False)


# transformers name -> segment-anything name, applied in order (all that match)
_HF_TO_OFFICIAL = [
    (r"^vision_encoder\.", "image_encoder."),
    (r"^image_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^image_encoder\.layers\.(\d+)\.layer_norm([12])\.", r"image_encoder.blocks.\1.norm\2."),
    (r"^image_encoder\.layers\.", "image_encoder.blocks."),
    (r"^image_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"^image_encoder\.neck\.layer_norm1\.", "image_encoder.neck.1."),
    (r"^image_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^image_encoder\.neck\.layer_norm2\.", "image_encoder.neck.3."),
    (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.layer_norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.layer_norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"^mask_decoder\.transformer\.layers\.(\d+)\.layer_norm(\d)\.", r"mask_decoder.transformer.layers.\1.norm\2."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
    # 3-layer MLPs: middle first, then the ends
    (r"^(mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head))\.layers\.0\.", r"\1.layers.1."),
    (r"^(mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head))\.proj_in\.", r"\1.layers.0."),
    (r"^(mask_decoder\.(output_hypernetworks_mlps\.\d+|iou_prediction_head))\.proj_out\.", r"\1.layers.2."),
]


def hf_to_official(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a ``transformers`` SamModel state dict to segment-anything's names."""
    out = {}
    for key, value in state.items():
        if key == "prompt_encoder.shared_embedding.positional_embedding":
            continue
        if key == "shared_image_embedding.positional_embedding":
            out["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = value.clone()
            continue
        name = key
        for pattern, replacement in _HF_TO_OFFICIAL:
            name = re.sub(pattern, replacement, name)
        out[name] = value.clone()
    return out


def write_official_checkpoint(model: nn.Module, path: str | Path) -> dict[str, torch.Tensor]:
    """Save a ``transformers`` SamModel's weights as segment-anything's checkpoint at ``path``.

    ``.safetensors`` is written with safetensors, anything else with ``torch.save`` (Meta's
    ``sam_vit_*.pth`` are plain state dicts). Returns the state dict written (official names).
    """
    path = Path(path)
    state = hf_to_official({k: v.detach().cpu() for k, v in model.state_dict().items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return state
