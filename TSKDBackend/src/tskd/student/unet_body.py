"""The U-Net students' 2D body, in plain torch: the same module tree as MONAI's residual U-Net.

:class:`UNetBody` reproduces the layout of MONAI 1.6.1's ``monai.networks.nets.UNet`` built with
``spatial_dims=2`` and the default kernel sizes, activation (PReLU), bias and ``adn_ordering="NDA"``
(monai/networks/nets/unet.py, with its blocks from monai/networks/blocks/convolutions.py
``Convolution`` and ``ResidualUnit``, monai/networks/blocks/acti_norm.py ``ADN`` and
monai/networks/layers/simplelayers.py ``SkipConnection``): the same submodule names, so the
``state_dict`` keys and shapes of every student saved while the body was MONAI's load unchanged;
the same order of parameter creation, so one torch seed gives the same initial weights; and the
same operations in the same order, so the outputs are the same bit for bit
(tests/student/test_unet_body_parity.py checks all three against MONAI).

Importing MONAI cost about 8 s of wall time in every training, export and service worker process
(its package ``__init__`` imports all of its submodules, transformers' BERT included); the U-Net
path now imports torch only. The tree, for ``channels=(c0, c1, c2)`` and strides 2::

    model = Sequential(                         # top level
        0: down(in -> c0, stride 2),
        1: SkipConnection(submodule=Sequential(  # next level
               0: down(c0 -> c1, stride 2),
               1: SkipConnection(submodule=bottom(c1 -> c2, stride 1)),
               2: up(c1 + c2 -> c0, stride 2))),
        2: up(2 * c0 -> out, stride 2, top))

A ``down`` block is a residual unit of ``num_res_units`` convolutions (or one convolution when
``num_res_units`` is 0); an ``up`` block is a transposed convolution, followed by a one-convolution
residual unit when ``num_res_units > 0``. The top ``up`` block ends with a bare convolution (no
normalisation or activation). Each block is built after the levels below it (MONAI builds its
U-Net from the bottom up), and that is the order in which their weights draw random numbers.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

__all__ = ["UNetBody", "SkipConnection", "ConvBlock", "ResidualBlock", "NORMS", "norm_class"]

#: Normalisations a U-Net spec may name (MONAI's factory names, case-insensitive): the torch layer
#: for 2D feature maps. Both are built as MONAI builds them (``num_features`` only, torch defaults).
NORMS: dict[str, type[nn.Module]] = {"instance": nn.InstanceNorm2d, "batch": nn.BatchNorm2d}

KERNEL_SIZE = 3
PADDING = 1  # "same" padding of a 3x3 kernel


def norm_class(norm: str) -> type[nn.Module]:
    """The torch layer for the normalisation named ``norm`` (a :data:`NORMS` name, any case).

    Raises:
        ValueError: ``norm`` is not one of :data:`NORMS`.
    """
    layer = NORMS.get(norm.lower()) if isinstance(norm, str) else None
    if layer is None:
        raise ValueError(f"U-Net norm {norm!r} is not supported; supported: {', '.join(NORMS)}")
    return layer


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The normalisation named ``norm`` (one of :data:`NORMS`) for ``channels`` feature maps."""
    return norm_class(norm)(channels)


class SkipConnection(nn.Module):
    """``cat([x, submodule(x)], dim=1)``: the skip around a lower level (MONAI's ``mode="cat"``)."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


def _norm_dropout_act(channels: int, norm: str, dropout: float) -> nn.Sequential:
    """MONAI's ``ADN`` in its "NDA" order: normalisation ``N``, dropout ``D`` (present even at
    probability 0, as MONAI adds it for any float), PReLU ``A`` (one weight, initialised to 0.25)."""
    block = nn.Sequential()
    block.add_module("N", norm_layer(norm, channels))
    block.add_module("D", nn.Dropout(p=float(dropout)))
    block.add_module("A", nn.PReLU())
    return block


class ConvBlock(nn.Sequential):
    """A 3x3 convolution (or transposed convolution) ``conv``, then ``adn`` (norm, dropout, PReLU)
    unless ``conv_only`` (MONAI's ``Convolution``)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, norm: str, dropout: float,
                 transposed: bool = False, conv_only: bool = False) -> None:
        super().__init__()
        conv: nn.Module
        if transposed:
            conv = nn.ConvTranspose2d(in_channels, out_channels, kernel_size=KERNEL_SIZE, stride=stride,
                                      padding=PADDING, output_padding=stride - 1)
        else:
            conv = nn.Conv2d(in_channels, out_channels, kernel_size=KERNEL_SIZE, stride=stride, padding=PADDING)
        self.add_module("conv", conv)
        if not conv_only:
            self.add_module("adn", _norm_dropout_act(out_channels, norm, dropout))


class ResidualBlock(nn.Module):
    """``subunits`` :class:`ConvBlock` s in ``conv`` (``unit0``, ``unit1``, ...; only the first one
    strided) plus a ``residual`` path: identity, or a convolution where the shape changes (3x3 with the
    stride when strided, else 1x1). MONAI's ``ResidualUnit``."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, subunits: int, norm: str,
                 dropout: float, last_conv_only: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential()
        self.residual: nn.Module = nn.Identity()
        subunits = max(1, subunits)
        channels, unit_stride = in_channels, stride
        for index in range(subunits):
            self.conv.add_module(f"unit{index}", ConvBlock(
                channels, out_channels, stride=unit_stride, norm=norm, dropout=dropout,
                conv_only=last_conv_only and index == subunits - 1))
            channels, unit_stride = out_channels, 1
        if stride != 1:
            self.residual = nn.Conv2d(in_channels, out_channels, KERNEL_SIZE, stride, PADDING)
        elif in_channels != out_channels:
            self.residual = nn.Conv2d(in_channels, out_channels, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = self.residual(x)
        return self.conv(x) + residual


class UNetBody(nn.Module):
    """The 2D residual U-Net of MONAI's ``UNet`` (see the module docstring); ``model`` holds it.

    Args:
        in_channels, out_channels: input and output channels.
        channels: channels per level, top first (at least 2).
        strides: one stride per level below the top (``len(channels) - 1`` values).
        num_res_units: convolutions per residual unit of the down path (0: plain convolutions).
        norm: a :data:`NORMS` name.
        dropout: dropout probability after each normalisation.
    """

    def __init__(self, *, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int, norm: str, dropout: float) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError(f"a U-Net needs at least 2 channel levels, got {tuple(channels)}")
        if len(strides) != len(channels) - 1:
            raise ValueError(f"a U-Net with {len(channels)} channel levels needs {len(channels) - 1} strides, "
                             f"got {tuple(strides)}")
        norm_class(norm)  # an unsupported name fails here, before any weight is drawn
        self.num_res_units = num_res_units
        self.norm = norm
        self.dropout = dropout
        self.model = self._level(in_channels, out_channels, tuple(channels), tuple(strides), is_top=True)

    def _level(self, in_channels: int, out_channels: int, channels: tuple[int, ...], strides: tuple[int, ...],
               is_top: bool) -> nn.Sequential:
        # Bottom up, as MONAI: the lower levels' weights are drawn before this level's down and up blocks.
        width, stride = channels[0], strides[0]
        if len(channels) > 2:
            lower: nn.Module = self._level(width, width, channels[1:], strides[1:], is_top=False)
            up_in = 2 * width
        else:
            lower = self._down(width, channels[1], stride=1)  # the bottleneck
            up_in = width + channels[1]
        down = self._down(in_channels, width, stride=stride)
        up = self._up(up_in, out_channels, stride=stride, is_top=is_top)
        return nn.Sequential(down, SkipConnection(lower), up)

    def _down(self, in_channels: int, out_channels: int, *, stride: int) -> nn.Module:
        if self.num_res_units > 0:
            return ResidualBlock(in_channels, out_channels, stride=stride, subunits=self.num_res_units,
                                 norm=self.norm, dropout=self.dropout)
        return ConvBlock(in_channels, out_channels, stride=stride, norm=self.norm, dropout=self.dropout)

    def _up(self, in_channels: int, out_channels: int, *, stride: int, is_top: bool) -> nn.Module:
        conv = ConvBlock(in_channels, out_channels, stride=stride, norm=self.norm, dropout=self.dropout,
                         transposed=True, conv_only=is_top and self.num_res_units == 0)
        if self.num_res_units == 0:
            return conv
        unit = ResidualBlock(out_channels, out_channels, stride=1, subunits=1, norm=self.norm, dropout=self.dropout,
                             last_conv_only=is_top)
        return nn.Sequential(conv, unit)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)
