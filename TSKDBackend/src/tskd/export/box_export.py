"""ONNX export of a SAM-family segmenter's box-to-mask path: an encoder graph and a decoder graph.

:func:`export_box_model` writes the folder :mod:`tskd.runtime.box_model` reads (format described
there): the image encoder (``SamSegmenter.image_embeddings``, LiteMedSAM's per-image min-max
rescaling included, which leaves an input already in ``[0, 1]`` with a zero pixel unchanged) and SAM's
prompt encoder + mask decoder for ``N`` boxes (``SamSegmenter.box_masks``). Any segmenter on
foundation weights exports: the zero-shot LiteMedSAM, or a run's fine-tuned teacher.
:func:`verify_box_model` runs both graphs on onnxruntime against torch.

Export uses torch's TorchScript-based exporter (``dynamo=False``, opset 17), like the student's.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from tskd.atomic import write_json
from tskd.export.onnx_export import OnnxVerificationError, write_onnx_graph
from tskd.runtime.box_model import (
    BOX_FORMAT_NAME,
    BOX_FORMAT_VERSION,
    BOX_METADATA_NAME,
    BOXES,
    DECODER_NAME,
    EMBEDDINGS,
    ENCODER_INPUT,
    ENCODER_NAME,
    LOGITS,
    PREPROCESSING,
)

if TYPE_CHECKING:  # transformers is imported only by whoever builds the model
    from tskd.teacher.model import SamSegmenter

__all__ = ["export_box_model", "verify_box_model", "verify_on_pattern"]

logger = logging.getLogger(__name__)


class _Encoder(nn.Module):
    def __init__(self, segmenter: SamSegmenter) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.segmenter.image_embeddings(pixels)


class _Decoder(nn.Module):
    def __init__(self, segmenter: SamSegmenter) -> None:
        super().__init__()
        self.segmenter = segmenter

    def forward(self, embeddings: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        return self.segmenter.box_masks(embeddings, boxes[None])[0]


def _checkpoint_sha256(model: SamSegmenter, given: str | None) -> str:
    sha = given or getattr(model.base, "sha256", None)
    if not sha or len(sha) != 64:
        raise ValueError("the model has no base checkpoint SHA-256; pass checkpoint_sha256 (64 hex digits)")
    return sha


def export_box_model(
    model: SamSegmenter,
    folder: str | Path,
    *,
    name: str | None = None,
    checkpoint_sha256: str | None = None,
    extra: dict[str, Any] | None = None,
    opset: int = 17,
) -> Path:
    """Write ``box_encoder.onnx``, ``box_decoder.onnx`` and ``box_model.json`` into ``folder``.

    Args:
        model: a segmenter on foundation weights (not modified: a CPU float32 copy is exported).
        folder: created when missing; the JSON is written last, so a folder with it is complete.
        name: the model's readable name (default: its architecture).
        checkpoint_sha256: SHA-256 of the weights (default: the model's base checkpoint's; give the
            fine-tuned weights' hash for a run's teacher).
        extra: more JSON fields (e.g. the run's name), written as given.
        opset: ONNX opset version.

    Returns:
        the folder.

    Raises:
        ValueError: the model has no foundation weights or no checkpoint hash.
    """
    if not model.has_foundation_weights:
        raise ValueError("only a segmenter on foundation weights can segment from a box; this one was trained from scratch")
    sha = _checkpoint_sha256(model, checkpoint_sha256)
    net = copy.deepcopy(getattr(model, "module", model)).cpu().float().eval()
    # the graph must hold the encoder itself: traced through a run's embedding cache (a frozen teacher's),
    # the export would read and write cache files and record their numbers as constants
    net.embedding_cache = None
    size = net.input_size
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BOX_METADATA_NAME).unlink(missing_ok=True)  # an interrupted export leaves no valid-looking folder
    pixels = torch.zeros(1, 1, size, size)
    pixels[..., : size // 2, : size // 3] = 1.0
    encoder, decoder = _Encoder(net).eval(), _Decoder(net).eval()
    # the decoder is traced on an embedding of the encoder's output shape: its values do not enter the graph,
    # so the encoder's trace is its one pass (verify_on_pattern then checks both graphs on a real embedding)
    embeddings = torch.zeros(1, net.embedding_dim, net.embedding_size, net.embedding_size)
    boxes = torch.tensor([[size * 0.1, size * 0.2, size * 0.6, size * 0.7], [0.0, 0.0, size - 1.0, size - 1.0]])
    write_onnx_graph(encoder, (pixels,), folder / ENCODER_NAME, input_names=[ENCODER_INPUT],
                     output_names=[EMBEDDINGS], dynamic_axes={}, opset=opset)
    write_onnx_graph(decoder, (embeddings, boxes), folder / DECODER_NAME, input_names=[EMBEDDINGS, BOXES],
                     output_names=[LOGITS], dynamic_axes={BOXES: {0: "boxes"}, LOGITS: {0: "boxes"}}, opset=opset)
    base = net.base.to_dict() if hasattr(net.base, "to_dict") else {}
    metadata = {
        "format": BOX_FORMAT_NAME,
        "format_version": BOX_FORMAT_VERSION,
        "model": name or net.architecture,
        "architecture": net.architecture,
        "checkpoint_sha256": sha,
        "base_checkpoint_sha256": base.get("sha256"),
        "input_size": size,
        "embedding_shape": [int(v) for v in embeddings.shape[1:]],
        "preprocessing": PREPROCESSING,
        "box_units": "input pixels: x1, y1, x2, y2 after the longest side is scaled to input_size",
        "encoder": {"file": ENCODER_NAME, "input": ENCODER_INPUT, "output": EMBEDDINGS},
        "decoder": {"file": DECODER_NAME, "inputs": [EMBEDDINGS, BOXES], "output": LOGITS},
        "opset": opset,
        "torch_version": torch.__version__,
        **(extra or {}),
    }
    write_json(folder / BOX_METADATA_NAME, metadata)
    logger.info("exported the box model of %s (%s) to %s", metadata["model"], sha[:12], folder)
    return folder


def _relative(got: np.ndarray, expected: np.ndarray) -> float:
    return float(np.abs(got - expected).max() / max(float(np.abs(expected).max()), 1e-12))


def verify_box_model(
    model: SamSegmenter,
    folder: str | Path,
    pixels: np.ndarray | torch.Tensor,
    boxes: Sequence[Sequence[float]],
    *,
    rtol: float = 1e-4,
) -> dict[str, float]:
    """Run both graphs on onnxruntime and the torch model on the same input and compare.

    Args:
        model: the exported segmenter.
        folder: the export.
        pixels: one model input ``(S, S)`` or ``(1, 1, S, S)`` in ``[0, 1]``.
        boxes: ``(N, 4)`` boxes in input pixels.
        rtol: the largest accepted ``max|difference| / max|torch value|``, for the embedding and the logits.

    Returns:
        ``embedding_rel``, ``logits_rel`` (the measured relative differences) and ``mask_agreement``
        (the fraction of logit pixels on the same side of 0).

    Raises:
        OnnxVerificationError: a difference above ``rtol``.
    """
    folder = Path(folder)
    net = getattr(model, "module", model)
    size = net.input_size
    x = torch.as_tensor(np.asarray(pixels, dtype=np.float32)).reshape(1, 1, size, size)
    b = torch.as_tensor(np.asarray(boxes, dtype=np.float32)).reshape(-1, 4)
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    try:
        with torch.no_grad():
            embeddings = net._encode(x.to(device)).float()  # the encoder itself, never an embedding cache
            logits = net.box_masks(embeddings, b[None].to(device))[0].float().cpu().numpy()
            embeddings = embeddings.cpu().numpy()
    finally:
        net.train(was_training)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    encoder = ort.InferenceSession(str(folder / ENCODER_NAME), options, providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(folder / DECODER_NAME), options, providers=["CPUExecutionProvider"])
    got_embeddings = encoder.run([EMBEDDINGS], {ENCODER_INPUT: x.numpy()})[0]
    # the decoder is checked on torch's embedding, so its own difference is measured apart from the encoder's
    got_logits = decoder.run([LOGITS], {EMBEDDINGS: embeddings, BOXES: b.numpy()})[0]
    result = {
        "embedding_rel": _relative(got_embeddings, embeddings),
        "logits_rel": _relative(got_logits, logits),
        "mask_agreement": float(((got_logits > 0) == (logits > 0)).mean()),
    }
    if result["embedding_rel"] > rtol or result["logits_rel"] > rtol:
        raise OnnxVerificationError(
            f"{folder}: onnxruntime disagrees with torch (embedding {result['embedding_rel']:.3g}, logits "
            f"{result['logits_rel']:.3g} relative; allowed {rtol:g}); export again, or report this as a bug "
            "with the model name and opset"
        )
    logger.info("box model check passed: embedding %.3g, logits %.3g relative", result["embedding_rel"], result["logits_rel"])
    return result


def verify_on_pattern(model: SamSegmenter, folder: str | Path) -> dict[str, float]:
    """:func:`verify_box_model` on a fixed synthetic input (a bright rectangle) and a box around it:
    the check every export of a box model runs before the folder is used."""
    size = getattr(model, "module", model).input_size
    pixels = np.zeros((size, size), dtype=np.float32)
    pixels[size // 8: size // 2, size // 4: size * 3 // 4] = 1.0
    return verify_box_model(model, folder, pixels, [[size / 4 - 4, size / 8 - 4, size * 3 / 4 + 4, size / 2 + 4]])
