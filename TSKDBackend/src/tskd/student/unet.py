"""U-Net students: MONAI's 2D :class:`~monai.networks.nets.UNet` with its bottleneck as the features.

With four stride-2 levels the bottleneck of MONAI's UNet sits at 1/16 of the input resolution,
which is where :meth:`UNetStudent.forward_with_features` reads the distillation features (through
a forward hook, so the plain :meth:`forward` and its ONNX graph are exactly MONAI's UNet).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from monai.networks.layers.simplelayers import SkipConnection
from monai.networks.nets import UNet
from torch import nn

from tskd.student.base import FEATURE_STRIDE, StudentModel

__all__ = ["UNetSpec", "UNET_SPECS", "UNetStudent"]


@dataclass(frozen=True)
class UNetSpec:
    """Numbers of one U-Net student size.

    Args:
        channels: channels per level, top first; five levels give four stride-2 steps (1/16).
        num_res_units: residual units per block (0: plain conv blocks).
        norm: MONAI normalisation name (``instance`` does not depend on the batch size).
        dropout: dropout probability.
    """

    channels: tuple[int, ...] = (16, 32, 64, 128, 256)
    num_res_units: int = 1
    norm: str = "instance"
    dropout: float = 0.0


UNET_SPECS: dict[str, UNetSpec] = {
    # ~0.84M parameters: a few milliseconds per 256x256 slice on a desktop CPU (onnxruntime).
    "unet_small": UNetSpec(),
    # ~34k parameters, for tests.
    "unet_tiny": UNetSpec(channels=(8, 16, 16, 32, 32), num_res_units=0),
}


class UNetStudent(StudentModel):
    """MONAI 2D UNet; features are its bottleneck output ``(B, channels[-1], H/16, W/16)``.

    Args:
        name: registry name.
        num_classes: K (with background).
        input_size: nominal side S (any multiple of 16 works).
        in_channels: input channels.
        spec: size numbers.
    """

    def __init__(self, *, name: str, num_classes: int, input_size: int, in_channels: int = 1, spec: UNetSpec) -> None:
        if len(spec.channels) != 5:
            raise ValueError(f"UNetSpec.channels needs 5 levels (4 stride-2 steps to 1/16), got {spec.channels}")
        super().__init__(
            name=name,
            num_classes=num_classes,
            input_size=input_size,
            in_channels=in_channels,
            feature_channels=spec.channels[-1],
            size_multiple=FEATURE_STRIDE,
        )
        self.arch = spec
        self.unet = UNet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=num_classes,
            channels=spec.channels,
            strides=(2,) * (len(spec.channels) - 1),
            num_res_units=spec.num_res_units,
            norm=spec.norm,
            dropout=spec.dropout,
        )
        self._bottleneck = _find_bottleneck(self.unet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` for ``x`` ``(B, C_in, H, W)``."""
        self.check_input(x)
        return self.unet(x)

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, H, W)`` and bottleneck features ``(B, channels[-1], H/16, W/16)``."""
        captured: list[torch.Tensor] = []
        handle = self._bottleneck.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            logits = self.forward(x)
        finally:
            handle.remove()
        return logits, captured[0]


def _find_bottleneck(unet: UNet) -> nn.Module:
    """The innermost block of MONAI's nested ``Sequential(down, SkipConnection(sub), up)`` layout."""
    block: nn.Module = unet.model
    while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
        block = block[1].submodule
    if block is unet.model:
        raise ValueError("unexpected MONAI UNet layout: no skip connections found")
    return block
