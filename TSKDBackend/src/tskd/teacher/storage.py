"""Saving and loading a fine-tuned teacher (the ``teacher/`` folder of a run).

A teacher on foundation weights is stored as what training changed: the LoRA adapter weights (none
when the encoder was frozen; ``lora`` is then null in ``teacher.json``) and the mask decoder (``adapter_decoder.safetensors``, a few MB), plus ``teacher.json`` naming the base
checkpoint by path, size and SHA-256. Loading rebuilds the model on the same base file and refuses
a file whose hash differs. A teacher without foundation weights (``base: none``) is small and is
stored whole (``model.safetensors``).

``teacher.json`` holds: format and tskd version, architecture, input size, number of classes,
label names, prompt mode, LoRA settings, the base checkpoint (path, sha256, size, layout),
``has_foundation_weights``, the weights file and its SHA-256, and the resolved teacher config.
Every file is written atomically (temporary file, then rename); ``teacher.json`` is written last,
so its presence marks a complete folder.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

import tskd
from tskd.atomic import atomic_write
from tskd.errors import CheckpointError
from tskd.teacher.build import build_scratch_segmenter
from tskd.teacher.checkpoints import (
    BaseCheckpoint,
    checkpoint_sha256,
    file_sha256,
    load_pretrained_segmenter,
)
from tskd.teacher.config import LoraConfig, TeacherConfig
from tskd.teacher.keymap import TIED_POSITIONAL_KEY
from tskd.teacher.lora import apply_lora, lora_parameter_names, set_trainable
from tskd.teacher.model import SamSegmenter

__all__ = ["TEACHER_JSON", "save_teacher", "load_teacher", "read_teacher_info"]

logger = logging.getLogger(__name__)

TEACHER_JSON = "teacher.json"
FORMAT = "tskd-teacher"
FORMAT_VERSION = 1
_ADAPTER_FILE = "adapter_decoder.safetensors"
_FULL_FILE = "model.safetensors"
_TIED = "sam." + TIED_POSITIONAL_KEY


def _saved_keys(model: SamSegmenter) -> list[str]:
    """State-dict keys a teacher folder stores for ``model``."""
    keys = list(model.state_dict())
    if model.has_foundation_weights:
        lora = set(lora_parameter_names(model))
        return [k for k in keys if k in lora or k.startswith("sam.mask_decoder.")]
    return [k for k in keys if k != _TIED]  # the tied copy is restored on load


def save_teacher(
    model: SamSegmenter,
    folder: str | Path,
    config: TeacherConfig,
    base_info: BaseCheckpoint | None = None,
    *,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Write the teacher's weights and ``teacher.json`` into ``folder``.

    Args:
        model: the fine-tuned teacher (unwrapped from DDP/accelerate).
        folder: destination, created if needed.
        config: the teacher config it was trained with.
        base_info: its foundation checkpoint; defaults to ``model.base``.
        label_names: names of the ``K`` classes (background first), if known.

    Returns:
        the path of ``teacher.json``.
    """
    if label_names is not None and len(label_names) != model.num_classes:
        raise ValueError(f"label_names has {len(label_names)} names for {model.num_classes} classes")
    base_info = base_info if base_info is not None else model.base
    if model.has_foundation_weights and base_info is None:
        raise ValueError("a teacher on foundation weights needs base_info (the base checkpoint's description)")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = model.state_dict()
    tensors = {k: state[k].detach().to("cpu", copy=True).contiguous() for k in _saved_keys(model)}
    weights = folder / (_ADAPTER_FILE if model.has_foundation_weights else _FULL_FILE)
    atomic_write(weights, lambda tmp: save_file(tensors, str(tmp), metadata={"format": "pt"}))
    lora = model.lora.to_dict() if model.lora is not None else None
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "tskd_version": tskd.__version__,
        "architecture": model.architecture,
        "input_size": model.input_size,
        "num_classes": model.num_classes,
        "label_names": list(label_names) if label_names is not None else None,
        "prompt_mode": model.prompt_mode,
        "has_foundation_weights": model.has_foundation_weights,
        "lora": lora,
        "base": base_info.to_dict() if (model.has_foundation_weights and base_info is not None) else None,
        "weights": weights.name,
        "weights_sha256": file_sha256(weights),
        "config": config.to_dict(),
    }
    path = folder / TEACHER_JSON
    atomic_write(path, lambda tmp: tmp.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8"))
    logger.info("saved the teacher to %s (%d tensors in %s)", folder, len(tensors), weights.name)
    return path


def read_teacher_info(folder: str | Path) -> dict[str, Any]:
    """The content of ``teacher.json`` in ``folder``.

    Raises:
        CheckpointError: no ``teacher.json``, or not a teacher folder of a known format.
    """
    path = Path(folder) / TEACHER_JSON
    if not path.is_file():
        raise CheckpointError(f"{folder}: no {TEACHER_JSON}; not a trained teacher folder (run the teacher stage first)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a tskd teacher description (format {FORMAT!r} expected)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written by a newer tskd (format version {meta['format_version']}); upgrade tskd to load it"
        )
    return meta


def load_teacher(folder: str | Path, *, base: str | Path | None = None, device: str | torch.device = "cpu") -> SamSegmenter:
    """Rebuild a saved teacher, in eval mode.

    Args:
        folder: a folder written by :func:`save_teacher`.
        base: the foundation checkpoint to use instead of the path recorded in ``teacher.json``
            (e.g. after moving it); its SHA-256 must match the recorded one.
        device: where to put the model.

    Raises:
        CheckpointError: the folder is incomplete, the base file is missing or differs.
    """
    folder = Path(folder)
    meta = read_teacher_info(folder)
    json_path = folder / TEACHER_JSON
    weights = folder / str(meta.get("weights", ""))
    if not weights.is_file():
        raise CheckpointError(f"{weights}: the teacher's weights file named in {json_path} is missing")
    if meta.get("weights_sha256") and file_sha256(weights) != meta["weights_sha256"]:
        raise CheckpointError(f"{weights}: its SHA-256 differs from the one recorded in {json_path}; the file was changed")
    try:
        architecture, input_size, num_classes = meta["architecture"], int(meta["input_size"]), int(meta["num_classes"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{json_path}: incomplete teacher description ({exc})") from exc

    if meta.get("has_foundation_weights"):
        recorded = meta.get("base") or {}
        base_path = Path(base if base is not None else recorded.get("path", "")).expanduser()
        if not base_path.exists():
            raise CheckpointError(
                f"{base_path}: the teacher's base checkpoint (sha256 {recorded.get('sha256')}) is not there; "
                "pass the file's new location as base"
            )
        actual, _ = checkpoint_sha256(base_path)
        if actual != recorded.get("sha256"):
            raise CheckpointError(
                f"{base_path}: not the base checkpoint this teacher was trained on: SHA-256 {actual}, "
                f"expected {recorded.get('sha256')} (recorded in {json_path})"
            )
        model = load_pretrained_segmenter(
            base_path, architecture=architecture, input_size=input_size, num_classes=num_classes
        )
        if meta.get("lora") is not None:
            apply_lora(model, LoraConfig.from_dict(meta["lora"], source=f"{json_path}: lora"))
        else:  # trained with the encoder frozen: only the decoder was saved
            set_trainable(model)
            model.freeze_encoder()
    else:
        model = build_scratch_segmenter(architecture, input_size=input_size, num_classes=num_classes)
    _load_weights(model, weights)
    model.prompt_mode = meta.get("prompt_mode", "none")
    return model.to(device).eval()


def _load_weights(model: SamSegmenter, weights: Path) -> None:
    try:
        saved = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a readable .safetensors file ({exc})") from exc
    stored = set(_saved_keys(model))  # once: it walks the whole state dict (1,700 keys for LiteMedSAM)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k in stored}
    missing = sorted(set(expected) - set(saved))
    unexpected = sorted(set(saved) - set(expected))
    wrong = sorted(k for k in set(saved) & set(expected) if tuple(saved[k].shape) != expected[k])
    if missing or unexpected or wrong:
        raise CheckpointError(
            f"{weights}: does not fit the teacher described next to it: {len(missing)} missing "
            f"{missing[:5]}, {len(unexpected)} unexpected {unexpected[:5]}, {len(wrong)} of the wrong shape {wrong[:5]}"
        )
    if _TIED in model.state_dict() and not model.has_foundation_weights:
        saved[_TIED] = saved["sam.shared_image_embedding.positional_embedding"]
    result = model.load_state_dict(saved, strict=False)
    if result.unexpected_keys:
        raise CheckpointError(f"{weights}: unexpected tensors {result.unexpected_keys[:5]}")
