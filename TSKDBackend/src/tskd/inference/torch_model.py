"""A torch network behind the runtime's ``SliceModel`` interface.

:class:`TorchSliceModel` lets :func:`tskd.runtime.segment_volume` run any torch module that maps
normalised slices ``(B, 1, S, S)`` to logits ``(B, K, S, S)``: a package's torch student
(:meth:`TorchSliceModel.from_package`), a student during training, or the teacher.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from tskd.preprocess import NormalizationSpec
from tskd.runtime.package import StudentPackage
from tskd.runtime.postprocess import check_postprocessing

__all__ = ["TorchSliceModel"]


class TorchSliceModel:
    """A torch network with the metadata :func:`tskd.runtime.segment_volume` needs.

    Args:
        network: maps float ``(B, C, S, S)`` to logits ``(B, K, S, S)`` (a student's ``in_channels``
            ``C = 2c + 1`` makes it see each slice between ``c`` neighbours on either side); used in
            eval mode (its mode is restored after each call).
        input_size: S.
        label_values: the label value of each output channel (K values, the first 0).
        normalization: the normalisation training used.
        slice_axis: numpy axis of the ``(k, j, i)`` volume to slice along.
        device: where to run (default: the network's device).
        segments: name, label value and colour of each foreground label (``{"name", "label_value",
            "color"}``), for outputs that carry names such as ``.seg.nrrd``.
        postprocessing: what :func:`tskd.runtime.segment_volume` applies after the arg-max (a
            package's choice; ``none`` for the teacher and students outside a package).
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        input_size: int,
        label_values: Sequence[int],
        normalization: NormalizationSpec,
        slice_axis: int,
        device: str | torch.device | None = None,
        segments: Sequence[dict] | None = None,
        postprocessing: str = "none",
    ) -> None:
        if slice_axis not in (0, 1, 2):
            raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
        if len(label_values) < 2 or int(label_values[0]) != 0:
            raise ValueError(f"label_values must list K >= 2 values starting with 0, got {list(label_values)}")
        self.network = network
        self.input_size = int(input_size)
        self.label_values = [int(v) for v in label_values]
        self.num_classes = len(self.label_values)
        self.normalization = normalization
        self.slice_axis = int(slice_axis)
        self.segments = [dict(segment) for segment in segments] if segments is not None else None
        self.postprocessing = check_postprocessing(postprocessing)
        #: neighbours on either side of each slice (a student built for ``2c + 1`` channels; 0 for the teacher)
        self.context_slices = (int(getattr(network, "in_channels", 1)) - 1) // 2
        first = next(network.parameters(), None)
        self.device = torch.device(device) if device is not None else (first.device if first is not None else torch.device("cpu"))

    @classmethod
    def from_package(cls, package: StudentPackage | str | Path, device: str | torch.device = "cpu") -> TorchSliceModel:
        """The torch student of a package (its ``student.pt``)."""
        from tskd.export.package import load_torch_student

        package = package if isinstance(package, StudentPackage) else StudentPackage.load(package)
        network = load_torch_student(package, device=device)
        segments = [{"name": label.name, "label_value": label.value, "color": list(label.color)}
                    for label in package.labels if label.value != 0]
        return cls(network, input_size=package.input_size, label_values=package.label_values,
                   normalization=package.normalization, slice_axis=package.slice_axis, device=device,
                   segments=segments, postprocessing=package.postprocessing)

    @torch.no_grad()
    def logits(self, batch: np.ndarray) -> np.ndarray:
        """float32 ``(B, C, S, S)`` -> float32 ``(B, K, S, S)``; ``C = 2 * context_slices + 1``."""
        batch = np.asarray(batch, dtype=np.float32)
        size, channels = self.input_size, 2 * self.context_slices + 1
        if batch.ndim != 4 or batch.shape[1:] != (channels, size, size):
            raise ValueError(f"expected a batch of shape (B, {channels}, {size}, {size}), got {batch.shape}")
        was_training = self.network.training
        self.network.eval()
        try:
            out = self.network(torch.from_numpy(np.ascontiguousarray(batch)).to(self.device))
        finally:
            self.network.train(was_training)
        return out.float().cpu().numpy()
