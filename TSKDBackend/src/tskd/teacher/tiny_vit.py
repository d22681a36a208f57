"""The TinyViT image encoder of LiteMedSAM (MedSAM distilled for laptops), written for this project.

LiteMedSAM (Ma et al., "Efficient MedSAMs", arXiv 2412.16085) keeps SAM's prompt encoder and mask
decoder and replaces the ViT image encoder by a TinyViT (MobileSAM's variant) that sees a 256-px
image and gives SAM's 256-channel embedding on a grid of a quarter of the input (64 x 64 at 256):

=====  ============================  =====  ======  =====  ======  ==============================
stage  blocks                        width  depth   heads  window  grid (input S), then merge
=====  ============================  =====  ======  =====  ======  ==============================
stem   two 1x1 conv + BN                64                         S (no down-sampling)
0      inverted-residual convs (x4)     64       2                 S, then stride 2 -> S/2
1      windowed attention + conv       128       2      4       7  S/2, then stride 2 -> S/4
2      windowed attention + conv       160       6      5      14  S/4, then stride 1 -> S/4
3      windowed attention + conv       320       2     10       7  S/4
neck   1x1 conv, LN, 3x3 conv, LN      256                         S/4
=====  ============================  =====  ======  =====  ======  ==============================

About 5.7 M weights. Shapes and the order of weights are those of the published checkpoint
(``lite_medsam.pth``), so it loads strictly; the computation was written from the paper's
description and checked against the reference implementation by the parity test
(``tests/teacher/test_litemedsam_parity.py``), not copied from it. Details that matter for parity:

* every convolution is a bias-free convolution followed by batch norm (``conv.c`` / ``conv.bn``);
* attention projects to ``q, k, v`` interleaved per head (``[q_h | k_h | v_h]`` for head ``h``) and
  adds a learned bias per head and per window offset ``(|dy|, |dx|)`` (row-major, ``window**2`` of them);
* windows are cut from the token grid after zero-padding it on the bottom and right to a multiple
  of the window; padded tokens take part in the attention as keys, as in the reference;
* the last merge keeps the resolution (stride 1): the published model has no stride there.

:class:`TinyViTEncoder` returns the embedding ``(B, 256, S/4, S/4)``; its input is ``(B, 3, S, S)``
in ``[0, 1]`` (LiteMedSAM normalises each image by its own minimum and maximum, see
:class:`tskd.teacher.model.SamSegmenter`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TinyViTSpec", "TinyViTEncoder", "LITEMEDSAM_SPEC"]


@dataclasses.dataclass(frozen=True)
class TinyViTSpec:
    """The numbers of a TinyViT-SAM encoder.

    Args:
        widths: channels of the four stages.
        depths: blocks per stage (stage 0 is convolutional).
        heads: attention heads of stages 1-3 (stage 0 has none; its entry is ignored).
        windows: attention window side of stages 1-3 (stage 0's entry is ignored).
        merge_strides: stride of the merge after stages 0, 1 and 2.
        mlp_ratio: hidden width of the attention blocks' MLP, relative to the stage width.
        conv_expand: hidden width of stage 0's inverted-residual blocks, relative to its width.
        out_channels: channels of the embedding (SAM's prompt/decoder width).
    """

    widths: tuple[int, int, int, int] = (64, 128, 160, 320)
    depths: tuple[int, int, int, int] = (2, 2, 6, 2)
    heads: tuple[int, int, int, int] = (2, 4, 5, 10)
    windows: tuple[int, int, int, int] = (7, 7, 14, 7)
    merge_strides: tuple[int, int, int] = (2, 2, 1)
    mlp_ratio: float = 4.0
    conv_expand: float = 4.0
    out_channels: int = 256

    @property
    def downsampling(self) -> int:
        """Input pixels per embedding cell along each side (4 for LiteMedSAM)."""
        return math.prod(self.merge_strides)


LITEMEDSAM_SPEC = TinyViTSpec()


class ConvBN(nn.Sequential):
    """A bias-free convolution then batch norm (children ``c`` and ``bn``, as the checkpoint names them)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.c = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class LayerNorm2d(nn.Module):
    """Layer norm over the channels of ``(B, C, H, W)``."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps).permute(0, 3, 1, 2)


class Stem(nn.Module):
    """Two point-wise convolutions, 3 -> width/2 -> width, at full resolution."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(ConvBN(3, width // 2), nn.GELU(), ConvBN(width // 2, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class InvertedResidual(nn.Module):
    """Point-wise expand, depth-wise 3x3, point-wise project, plus the input (MobileNet's block)."""

    def __init__(self, width: int, expand: float) -> None:
        super().__init__()
        hidden = int(width * expand)
        self.conv1 = ConvBN(width, hidden)
        self.conv2 = ConvBN(hidden, hidden, 3, groups=hidden)
        self.conv3 = ConvBN(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.conv2(F.gelu(self.conv1(x))))
        return F.gelu(x + self.conv3(y))


class Merge(nn.Module):
    """Point-wise to the next width, depth-wise 3x3 with ``stride``, point-wise: ``(B, C, H, W)`` -> tokens."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = ConvBN(cin, cout)
        self.conv2 = ConvBN(cout, cout, 3, stride=stride, groups=cout)
        self.conv3 = ConvBN(cout, cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(F.gelu(self.conv2(F.gelu(self.conv1(x)))))


@functools.lru_cache(maxsize=8)
def _offset_index(window: int) -> torch.Tensor:
    """``(w*w, w*w)`` index of the offset ``(|dy|, |dx|)`` between two tokens of a window, ``|dy| * w + |dx|``
    (token ``t`` sits at row ``t // w``, column ``t % w``). Not a buffer, so models built on the meta
    device and given the checkpoint's tensors need nothing else."""
    position = torch.arange(window)
    rows = position.repeat_interleave(window)
    cols = position.repeat(window)
    return (rows[:, None] - rows[None, :]).abs() * window + (cols[:, None] - cols[None, :]).abs()


class WindowAttention(nn.Module):
    """Multi-head self-attention inside one window, with a learned bias per head and offset.

    Args:
        width: channels ``C`` of the tokens.
        heads: attention heads (``C`` must divide evenly).
        window: window side ``w``; the bias table has ``w * w`` offsets per head.
    """

    def __init__(self, width: int, heads: int, window: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.head_dim = width // heads
        self.norm = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.window = window
        self.attention_biases = nn.Parameter(torch.zeros(heads, window * window))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, w*w, C)`` window tokens -> ``(N, w*w, C)``."""
        n, length, width = tokens.shape
        q, k, v = (
            self.qkv(self.norm(tokens)).view(n, length, self.heads, 3, self.head_dim).permute(3, 0, 2, 1, 4)
        )  # each (N, heads, L, head_dim)
        index = _offset_index(self.window).to(self.attention_biases.device)
        bias = self.attention_biases[:, index].to(q.dtype)  # (heads, L, L)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.proj(out.transpose(1, 2).reshape(n, length, width))


class AttentionBlock(nn.Module):
    """Windowed attention, a depth-wise 3x3 convolution over the grid, then an MLP; residuals around
    the attention and the MLP."""

    def __init__(self, width: int, heads: int, window: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.attn = WindowAttention(width, heads, window)
        self.local_conv = ConvBN(width, width, 3, groups=width)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        batch, height, width, channels = x.shape
        w = self.window
        if height == w and width == w:
            return self.attn(x.reshape(batch, w * w, channels)).view(batch, height, width, channels)
        pad_h, pad_w = (-height) % w, (-width) % w
        if pad_h or pad_w:
            x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        rows, cols = (height + pad_h) // w, (width + pad_w) // w
        windows = x.view(batch, rows, w, cols, w, channels).transpose(2, 3).reshape(batch * rows * cols, w * w, channels)
        out = self.attn(windows).view(batch, rows, cols, w, w, channels).transpose(2, 3)
        return out.reshape(batch, rows * w, cols * w, channels)[:, :height, :width]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H, W, C)`` -> ``(B, H, W, C)``."""
        x = x + self._attend(x)
        x = self.local_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x + self.mlp(x)


class Mlp(nn.Module):
    """Pre-norm two-layer MLP with GELU."""

    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, hidden)
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(x))))


class Stage(nn.Module):
    """The blocks of one stage and the merge into the next (``blocks``, ``downsample``)."""

    def __init__(self, blocks: list[nn.Module], downsample: Merge | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.downsample = downsample


class TinyViTEncoder(nn.Module):
    """LiteMedSAM's image encoder: ``(B, 3, S, S)`` in ``[0, 1]`` -> ``(B, 256, S/4, S/4)``.

    Args:
        spec: the stage numbers (default: the published LiteMedSAM).

    ``S`` must be a multiple of 4. The model was trained at ``S = 256``; other sizes run (the
    attention biases are per window, not per image position) but are not what it learnt.
    """

    def __init__(self, spec: TinyViTSpec = LITEMEDSAM_SPEC) -> None:
        super().__init__()
        self.spec = spec
        widths = spec.widths
        self.patch_embed = Stem(widths[0])
        layers: list[Stage] = []
        for index in range(4):
            if index == 0:
                blocks: list[nn.Module] = [InvertedResidual(widths[0], spec.conv_expand) for _ in range(spec.depths[0])]
            else:
                blocks = [AttentionBlock(widths[index], spec.heads[index], spec.windows[index], spec.mlp_ratio)
                          for _ in range(spec.depths[index])]
            merge = Merge(widths[index], widths[index + 1], spec.merge_strides[index]) if index < 3 else None
            layers.append(Stage(blocks, merge))
        self.layers = nn.ModuleList(layers)
        self.neck = nn.Sequential()  # named like SAM's neck so both load through one key map
        self.neck.conv1 = nn.Conv2d(widths[-1], spec.out_channels, 1, bias=False)
        self.neck.layer_norm1 = LayerNorm2d(spec.out_channels)
        self.neck.conv2 = nn.Conv2d(spec.out_channels, spec.out_channels, 3, padding=1, bias=False)
        self.neck.layer_norm2 = LayerNorm2d(spec.out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Random weights for training from scratch (linear layers truncated normal, std 0.02)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)
        for stage in self.layers[:1]:
            for block in stage.blocks:
                nn.init.zeros_(block.conv3.bn.weight)  # each inverted residual starts as the identity

    def train(self, mode: bool = True) -> "TinyViTEncoder":
        """Train mode for what trains: a batch norm whose weights are frozen (a frozen encoder, or
        LoRA on the attention) keeps using its running statistics, so fine-tuning does not change
        the frozen part's output or statistics."""
        super().train(mode)
        for module in self.modules():
            if isinstance(module, nn.BatchNorm2d) and not module.weight.requires_grad:
                module.eval()
        return self

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3 or pixel_values.shape[-1] % 4 or pixel_values.shape[-2] % 4:
            raise ValueError(f"expected images (B, 3, S, S) with S a multiple of 4, got {tuple(pixel_values.shape)}")
        x = self.patch_embed(pixel_values)
        stem = self.layers[0]
        for block in stem.blocks:
            x = block(x)
        x = stem.downsample(x).permute(0, 2, 3, 1)  # channels last for the attention stages
        for stage in self.layers[1:]:
            for block in stage.blocks:
                x = block(x)
            if stage.downsample is not None:
                x = stage.downsample(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = self.neck(x.permute(0, 3, 1, 2))
        return x
