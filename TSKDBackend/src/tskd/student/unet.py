"""U-Net students: a 2D residual U-Net body (:class:`tskd.student.unet_body.UNetBody`), a 1x1
segmentation head, and a depth planned from the input size.

The body reproduces MONAI 1.6.1's ``monai.networks.nets.UNet`` layout (monai/networks/nets/unet.py,
built with ``spatial_dims=2`` and the spec's channels, ``num_res_units``, norm and dropout) in plain
torch: same module names, ``state_dict`` keys and shapes, weight initialisation order and forward
operations, so every student saved while the body was MONAI's own class loads unchanged, and a seed
gives the same student as before. MONAI itself is not imported on this path (its import took about
8 s per process); tests/student/test_unet_body_parity.py compares the two.

Two choices differ from using the U-Net as ``UNet(out_channels=K)``, both measured on the MSD
hippocampus volumes (docs/benchmarks.md, "Student training"):

* **A segmentation head.** MONAI's UNet ends with a transposed convolution to ``out_channels``
  followed by instance norm and PReLU, then one convolution: with ``out_channels = K`` every class
  map is normalised per image just before the logits, and the last hidden layer has only K
  channels. With some initialisations one foreground class never separates from a neighbouring
  one within a short budget (hippocampus, seed 0: anterior Dice 0.02 after 450 steps). The body
  here ends with ``channels[0]`` feature maps and a 1x1 convolution maps them to the K logits, as
  nnU-Net's and segment-anything's heads do (same seed: 0.84).
* **Depth from the input size.** As nnU-Net plans its pooling from the patch size, the number of
  stride-2 levels is the largest (at most ``len(channels) - 1``) that keeps the bottleneck at
  least :data:`MIN_BOTTLENECK` pixels wide and the input side divisible: 4 levels at 64 pixels and
  above, 3 at 32, 2 at 16. The bottleneck, where :meth:`UNetStudent.forward_with_features` reads
  the distillation features (through a forward hook), is at ``1 / 2**levels`` of the input.

Students saved before the head existed (``layout`` absent from their spec) are rebuilt in their
original layout (:data:`LEGACY_LAYOUT`), so old run folders and packages still load.
"""

from __future__ import annotations

import torch
from torch import nn

from tskd.student.base import StudentModel
from tskd.student.specs import UNET_SPECS, UNetSpec
from tskd.student.unet_body import NORMS, SkipConnection, UNetBody, norm_class

__all__ = ["UNetSpec", "UNET_SPECS", "UNetStudent", "unet_levels", "MIN_BOTTLENECK", "LAYOUT", "LEGACY_LAYOUT"]

#: The bottleneck's side is kept at or above this many pixels (nnU-Net's minimum feature-map size).
MIN_BOTTLENECK = 4
#: The current layout: planned depth and a 1x1 head.
LAYOUT = "head"
#: Students saved by tskd 0.1: four stride-2 levels whatever the input size, K-channel top layer.
LEGACY_LAYOUT = "monai"
LAYOUTS = (LAYOUT, LEGACY_LAYOUT)


def unet_levels(input_size: int, max_levels: int) -> int:
    """Stride-2 levels for a square input of side ``input_size``.

    The most levels (up to ``max_levels``) such that the input side stays divisible by
    ``2**levels`` and the bottleneck side ``input_size / 2**levels`` is at least
    :data:`MIN_BOTTLENECK`.

    Raises:
        ValueError: not even one level fits (an input below ``2 * MIN_BOTTLENECK`` or odd).
    """
    levels = 0
    while (levels < max_levels and input_size % 2 ** (levels + 1) == 0
           and input_size // 2 ** (levels + 1) >= MIN_BOTTLENECK):
        levels += 1
    if levels == 0:
        raise ValueError(
            f"input_size {input_size} is too small or odd for a U-Net: it needs an even side of at least "
            f"{2 * MIN_BOTTLENECK} pixels"
        )
    return levels


class UNetStudent(StudentModel):
    """U-Net body (MONAI UNet layout) + 1x1 head; features are its bottleneck ``(B, C, S/2**L, S/2**L)``.

    Args:
        name: registry name.
        num_classes: K (with background).
        input_size: nominal side S; the depth L is planned from it (:func:`unet_levels`), and any
            input whose sides are multiples of ``2**L`` works.
        in_channels: input channels.
        spec: size numbers.
        layout: :data:`LAYOUT` (default) or :data:`LEGACY_LAYOUT` (students saved by tskd 0.1).
    """

    def __init__(self, *, name: str, num_classes: int, input_size: int, in_channels: int = 1, spec: UNetSpec,
                 layout: str = LAYOUT) -> None:
        if layout not in LAYOUTS:
            raise ValueError(f"unknown U-Net layout {layout!r}; known: {', '.join(LAYOUTS)}")
        if len(spec.channels) < 2:
            raise ValueError(f"UNetSpec.channels needs at least 2 levels, got {spec.channels}")
        try:
            norm_class(spec.norm)
        except ValueError as exc:
            raise ValueError(f"student '{name}': its U-Net spec names norm {spec.norm!r}, which the U-Net body does "
                             f"not build; supported: {', '.join(NORMS)}") from exc
        max_levels = len(spec.channels) - 1
        if layout == LEGACY_LAYOUT:
            levels = max_levels
            if input_size % 2**levels:
                raise ValueError(f"input_size must be a positive multiple of {2**levels}, got {input_size}")
        else:
            levels = unet_levels(input_size, max_levels)
        channels = spec.channels[: levels + 1]
        super().__init__(
            name=name,
            num_classes=num_classes,
            input_size=input_size,
            in_channels=in_channels,
            feature_channels=channels[-1],
            size_multiple=2**levels,
        )
        self.arch = spec
        self.layout = layout
        self.levels = levels
        body_out = num_classes if layout == LEGACY_LAYOUT else channels[0]
        self.unet = UNetBody(
            in_channels=in_channels,
            out_channels=body_out,
            channels=channels,
            strides=(2,) * levels,
            num_res_units=spec.num_res_units,
            norm=spec.norm,
            dropout=spec.dropout,
        )
        self.head: nn.Module = nn.Identity() if layout == LEGACY_LAYOUT else nn.Conv2d(channels[0], num_classes, 1)
        self._bottleneck = _find_bottleneck(self.unet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, K, H, W)`` for ``x`` ``(B, C_in, H, W)``."""
        self.check_input(x)
        return self.head(self.unet(x))

    def forward_with_features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits ``(B, K, H, W)`` and bottleneck features ``(B, C, H / 2**L, W / 2**L)``."""
        captured: list[torch.Tensor] = []
        handle = self._bottleneck.register_forward_hook(lambda _m, _i, out: captured.append(out))
        try:
            logits = self.forward(x)
        finally:
            handle.remove()
        return logits, captured[0]

    def spec(self) -> dict:
        """:meth:`StudentModel.spec` plus the ``layout``."""
        return {**super().spec(), "layout": self.layout}


def _find_bottleneck(unet: UNetBody) -> nn.Module:
    """The innermost block of the nested ``Sequential(down, SkipConnection(sub), up)`` layout."""
    block: nn.Module = unet.model
    while isinstance(block, nn.Sequential) and len(block) == 3 and isinstance(block[1], SkipConnection):
        block = block[1].submodule
    if block is unet.model:
        raise ValueError("unexpected U-Net layout: no skip connections found")
    return block
