"""ONNX export of a student's ``forward`` and a check that onnxruntime agrees with torch.

The graph has one input ``image`` ``(B, C, S, S)`` float32 and one output ``logits``
``(B, K, S, S)``; the batch axis is dynamic, the spatial size is fixed to ``input_size`` (the
runtime resizes slices to it, exactly as training did). Export uses torch's TorchScript-based
exporter (``dynamo=False``, opset 17), which needs no extra packages.

Agreement: :func:`verify_onnx` compares argmax labels and logits. Exact argmax agreement is
expected, but a pixel whose two best logits are closer than float32 rounding of two different
kernel implementations (~1e-5) can legitimately flip, so the default threshold is 0.9999 of pixels;
a larger disagreement, or a logit difference beyond ``atol + rtol * max|logit|``, is an error.
"""

from __future__ import annotations

import copy
import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from tskd.atomic import temporary_sibling
from tskd.errors import TSKDError
from tskd.student.base import StudentWithProjector

__all__ = ["OnnxVerificationError", "export_onnx", "verify_onnx", "write_onnx_graph", "INPUT_NAME", "OUTPUT_NAME"]

logger = logging.getLogger(__name__)

INPUT_NAME = "image"
OUTPUT_NAME = "logits"


class OnnxVerificationError(TSKDError):
    """The exported ONNX model does not reproduce the torch model's output."""


def _exportable(model: nn.Module) -> nn.Module:
    """The network whose plain ``forward`` gives logits: unwrap DDP and drop a feature projector."""
    inner = getattr(model, "module", model)
    return inner.student if isinstance(inner, StudentWithProjector) else inner


def write_onnx_graph(module: nn.Module, args: tuple, path: Path, *, input_names: list[str], output_names: list[str],
                     dynamic_axes: dict[str, dict[int, str]], opset: int) -> None:
    """Trace ``module`` on ``args`` into ``path``: written to a temporary file beside it, checked by
    ``onnx.checker``, then renamed (the one ONNX writer of the student and the box model)."""
    # a fresh name, not a file made by mkstemp: the exporter creates it, so the graph gets the process's
    # umask like every other file of the package (mkstemp's 0600 made model.onnx readable by its owner alone)
    tmp = temporary_sibling(path, ".tmp")
    try:
        with warnings.catch_warnings():
            # expected and harmless here: the spatial size is fixed by design (tracer), MONAI's
            # instance norm has no running statistics (always "train" mode), and the exporter's
            # own notice that it is the legacy one
            warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*'instance_norm' is set to train=True.*")
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx.*")
            warnings.filterwarnings("ignore", message=r".*legacy TorchScript-based ONNX export.*")
            torch.onnx.export(module, args, str(tmp), input_names=input_names, output_names=output_names,
                              dynamic_axes=dynamic_axes, opset_version=opset, do_constant_folding=True, dynamo=False)
        onnx.checker.check_model(str(tmp))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    input_size: int,
    num_classes: int,
    opset: int = 17,
    in_channels: int | None = None,
) -> Path:
    """Write ``model``'s forward as an ONNX graph at ``path`` (atomically), in eval mode, on the CPU.

    Args:
        model: maps ``(B, C, S, S)`` to logits ``(B, K, S, S)``; a ``StudentWithProjector`` or a
            DDP wrapper is unwrapped to the student. The model is not modified (a CPU copy is exported).
        path: destination ``.onnx`` file; its folder is created.
        input_size: S.
        num_classes: K, checked against the model's output.
        opset: ONNX opset version.
        in_channels: C; taken from ``model.in_channels`` when present, else 1.

    Returns:
        the path written.
    """
    if input_size < 1 or num_classes < 2:
        raise ValueError(f"need input_size >= 1 and num_classes >= 2, got {input_size} and {num_classes}")
    net = copy.deepcopy(_exportable(model)).cpu().float().eval()
    channels = in_channels if in_channels is not None else int(getattr(net, "in_channels", 1))
    dummy = torch.zeros(2, channels, input_size, input_size)
    with torch.no_grad():
        out = net(dummy)
    expected = (2, num_classes, input_size, input_size)
    if tuple(out.shape) != expected:
        raise ValueError(f"model output {tuple(out.shape)} for input {tuple(dummy.shape)}; expected {expected}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_onnx_graph(net, (dummy,), path, input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                     dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}}, opset=opset)
    logger.info("exported ONNX model (opset %d, input %dx%d, %d classes) to %s", opset, input_size, input_size, num_classes, path)
    return path


def verify_onnx(
    model: nn.Module,
    path: str | Path,
    inputs: torch.Tensor | np.ndarray,
    *,
    min_agreement: float = 0.9999,
    atol: float = 1e-3,
    rtol: float = 1e-4,
) -> dict[str, float]:
    """Run ``inputs`` through torch and onnxruntime and compare.

    Args:
        model: the torch model that was exported (unwrapped like :func:`export_onnx`).
        path: the ``.onnx`` file.
        inputs: ``(B, C, S, S)`` float images.
        min_agreement: smallest accepted fraction of pixels with the same argmax (see module docs).
        atol / rtol: accepted ``max|logit difference| <= atol + rtol * max|torch logit|``.

    Returns:
        ``argmax_agreement`` (fraction of pixels), ``max_abs_diff``, ``tolerance``, ``pixels``.

    Raises:
        OnnxVerificationError: when argmax agreement or logit difference is outside the limits.
    """
    path = Path(path)
    if not path.is_file():
        raise OnnxVerificationError(f"{path}: ONNX file not found; export the model first")
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float32)) if isinstance(inputs, np.ndarray) else inputs.float()
    if x.ndim != 4:
        raise ValueError(f"inputs must be (B, C, S, S), got {tuple(x.shape)}")
    net = _exportable(model)
    was_training = net.training
    device = next(net.parameters()).device
    net.eval()
    try:
        with torch.no_grad():
            expected = net(x.to(device)).float().cpu().numpy()
    finally:
        net.train(was_training)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: x.cpu().numpy()})[0]
    if got.shape != expected.shape:
        raise OnnxVerificationError(f"{path}: ONNX output shape {got.shape} differs from torch {expected.shape}")
    agreement = float((got.argmax(axis=1) == expected.argmax(axis=1)).mean())
    max_abs_diff = float(np.abs(got - expected).max())
    tolerance = atol + rtol * float(np.abs(expected).max())
    result = {
        "argmax_agreement": agreement,
        "max_abs_diff": max_abs_diff,
        "tolerance": tolerance,
        "pixels": float(expected.shape[0] * expected.shape[2] * expected.shape[3]),
    }
    if agreement < min_agreement or max_abs_diff > tolerance:
        raise OnnxVerificationError(
            f"{path}: onnxruntime disagrees with torch (argmax agreement {agreement:.6f}, needs >= "
            f"{min_agreement}; max |logit difference| {max_abs_diff:.3g}, allowed {tolerance:.3g}); "
            "re-export the model, or report this as a bug with the model name and opset"
        )
    logger.info("ONNX check passed: argmax agreement %.6f, max |diff| %.3g", agreement, max_abs_diff)
    return result
