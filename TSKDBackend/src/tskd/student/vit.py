"""ViT students: a plain ViT encoder built from MONAI blocks with a UNETR-style convolutional decoder.

The encoder is MONAI's :class:`~monai.networks.blocks.PatchEmbeddingBlock` (16x16 conv patches,
learnable position embeddings), a class token, :class:`~monai.networks.blocks.TransformerBlock` s
and a final LayerNorm; it has exactly the parameter layout of the encoder of MONAI's
:class:`~monai.networks.nets.MaskedAutoEncoderViT`, so MAE pre-training transfers weight for
weight (:func:`tskd.student.mae.transfer_mae_encoder`). The class token is kept (and dropped
before decoding) because MAE-trained blocks have always attended to it.

The decoder is UNETR's (MONAI ``UnetrBasicBlock`` / ``UnetrPrUpBlock`` / ``UnetrUpBlock``) with a
small ``feature_size``; unlike MONAI's ``UNETR`` it reshapes tokens from the actual input grid, so
any input side that is a multiple of 16 works (position embeddings are resized bilinearly when
the grid differs from the one the model was built for).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.blocks import PatchEmbeddingBlock, TransformerBlock, UnetOutBlock
from monai.networks.blocks.unetr_block import (
    UnetrBasicBlock,
    UnetrPrUpBlock,
    UnetrUpBlock,
)
from monai.networks.layers import trunc_normal_
from torch import nn

from tskd.student.base import StudentModel
from tskd.student.specs import VIT_SPECS, ViTSpec

__all__ = ["ViTSpec", "VIT_SPECS", "ViTEncoder", "ViTStudent", "resize_position_embeddings"]


def resize_position_embeddings(pos: torch.Tensor, old_grid: tuple[int, int], new_grid: tuple[int, int]) -> torch.Tensor:
    """Resize patch position embeddings ``(1, h*w, C)`` from grid ``old_grid`` to ``new_grid`` (bilinear)."""
    if tuple(old_grid) == tuple(new_grid):
        return pos
    channels = pos.shape[-1]
    grid = pos.reshape(1, old_grid[0], old_grid[1], channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=tuple(new_grid), mode="bilinear", align_corners=False)
    return grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], channels)


class ViTEncoder(nn.Module):
    """Patch embedding + class token + transformer blocks + LayerNorm (MAE-encoder layout).

    Args:
        in_channels: input channels.
        img_size: side the position embeddings are made for.
        spec: the size numbers.
    """

    def __init__(self, *, in_channels: int, img_size: int, spec: ViTSpec) -> None:
        super().__init__()
        if img_size % spec.patch_size:
            raise ValueError(f"img_size {img_size} must be a multiple of the patch size {spec.patch_size}")
        self.arch = spec
        self.grid = (img_size // spec.patch_size, img_size // spec.patch_size)
        self.patch_embedding = PatchEmbeddingBlock(
            in_channels=in_channels,
            img_size=img_size,
            patch_size=spec.patch_size,
            hidden_size=spec.hidden_size,
            num_heads=spec.num_heads,
            proj_type="conv",
            pos_embed_type="learnable",
            spatial_dims=2,
        )
        self.cls_token = nn.Parameter(torch.zeros(1, 1, spec.hidden_size))
        trunc_normal_(self.cls_token, mean=0.0, std=0.02, a=-2.0, b=2.0)
        self.blocks = nn.ModuleList(
            TransformerBlock(spec.hidden_size, spec.mlp_dim, spec.num_heads, 0.0, qkv_bias=spec.qkv_bias)
            for _ in range(spec.num_layers)
        )
        self.norm = nn.LayerNorm(spec.hidden_size)
        for block in self.blocks:
            # MONAI always creates this LayerNorm; without cross-attention it is never used. Freezing
            # it keeps optimisers and DDP (unused-parameter checks) away from it.
            block.norm_cross_attn.requires_grad_(False)

    def forward(self, x: torch.Tensor, taps: tuple[int, ...] = ()) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encode ``(B, C_in, H, W)``.

        Returns:
            the normed patch tokens ``(B, h*w, hidden)`` (class token removed) and the patch tokens
            after each block index in ``taps`` (each ``(B, h*w, hidden)``), with ``h, w = H/16, W/16``.
        """
        patches = self.patch_embedding.patch_embeddings(x)  # (B, hidden, h, w)
        grid = (int(patches.shape[-2]), int(patches.shape[-1]))
        tokens = patches.flatten(2).transpose(1, 2)
        pos = resize_position_embeddings(self.patch_embedding.position_embeddings, self.grid, grid)
        tokens = self.patch_embedding.dropout(tokens + pos)
        tokens = torch.cat((self.cls_token.expand(tokens.shape[0], -1, -1), tokens), dim=1)
        tapped = []
        for index, block in enumerate(self.blocks):
            tokens = block(tokens)
            if index in taps:
                tapped.append(tokens[:, 1:])
        return self.norm(tokens)[:, 1:], tapped


class ViTStudent(StudentModel):
    """ViT encoder + UNETR-style decoder; features for distillation are the encoder's normed tokens.

    Args:
        name: registry name.
        num_classes: K (with background).
        input_size: S the position embeddings are made for.
        in_channels: input channels.
        spec: size numbers.
        norm_name: normalisation of the decoder's conv blocks (MONAI name).
    """

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        input_size: int,
        in_channels: int = 1,
        spec: ViTSpec,
        norm_name: str = "instance",
    ) -> None:
        super().__init__(
            name=name,
            num_classes=num_classes,
            input_size=input_size,
            in_channels=in_channels,
            feature_channels=spec.hidden_size,
            size_multiple=spec.patch_size,
        )
        if spec.patch_size != 16:
            raise ValueError(f"the decoder assumes a patch size of 16, got {spec.patch_size}")
        if spec.num_layers < 4:
            raise ValueError(f"the decoder taps 3 intermediate blocks; num_layers must be >= 4, got {spec.num_layers}")
        self.arch = spec
        self.encoder = ViTEncoder(in_channels=in_channels, img_size=input_size, spec=spec)
        depth = spec.num_layers
        self.taps = tuple(depth * k // 4 for k in (1, 2, 3))  # 12 layers: after blocks 3, 6, 9 (0-based) as UNETR
        hidden, f = spec.hidden_size, spec.decoder_features
        common = {"spatial_dims": 2, "norm_name": norm_name, "res_block": True}
        pr_up = {"kernel_size": 3, "stride": 1, "upsample_kernel_size": 2, "conv_block": True, **common}
        self.encoder1 = UnetrBasicBlock(in_channels=in_channels, out_channels=f, kernel_size=3, stride=1, **common)
        self.encoder2 = UnetrPrUpBlock(in_channels=hidden, out_channels=2 * f, num_layer=2, **pr_up)
        self.encoder3 = UnetrPrUpBlock(in_channels=hidden, out_channels=4 * f, num_layer=1, **pr_up)
        self.encoder4 = UnetrPrUpBlock(in_channels=hidden, out_channels=8 * f, num_layer=0, **pr_up)
        up = {"kernel_size": 3, "upsample_kernel_size": 2, **common}
        self.decoder5 = UnetrUpBlock(in_channels=hidden, out_channels=8 * f, **up)
        self.decoder4 = UnetrUpBlock(in_channels=8 * f, out_channels=4 * f, **up)
        self.decoder3 = UnetrUpBlock(in_channels=4 * f, out_channels=2 * f, **up)
        self.decoder2 = UnetrUpBlock(in_channels=2 * f, out_channels=f, **up)
        self.out = UnetOutBlock(spatial_dims=2, in_channels=f, out_channels=num_classes)

    @staticmethod
    def _to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
        """``(B, h*w, C)`` tokens to a ``(B, C, h, w)`` feature map."""
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], grid[0], grid[1])

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, H, W)`` and encoder features ``(B, hidden, H/16, W/16)`` for ``x`` ``(B, C_in, H, W)``."""
        self.check_input(x)
        grid = (x.shape[-2] // self.arch.patch_size, x.shape[-1] // self.arch.patch_size)
        tokens, tapped = self.encoder(x, self.taps)
        features = self._to_grid(tokens, grid)
        enc1 = self.encoder1(x)
        enc2 = self.encoder2(self._to_grid(tapped[0], grid))
        enc3 = self.encoder3(self._to_grid(tapped[1], grid))
        enc4 = self.encoder4(self._to_grid(tapped[2], grid))
        dec3 = self.decoder5(features, enc4)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        out = self.decoder2(dec1, enc1)
        return self.out(out), features
