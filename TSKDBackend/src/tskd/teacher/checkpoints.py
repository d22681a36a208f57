"""Loading SAM / MedSAM foundation weights from the files users really have.

Accepted, with the architecture detected from the weights (embedding width and depth):

* Meta's official ``sam_vit_b_01ec64.pth``, ``sam_vit_l_0b3195.pth``, ``sam_vit_h_4b8939.pth``
  and MedSAM's ``medsam_vit_b.pth`` (segment-anything's ``Sam`` state dict; also when wrapped as
  ``{"model": ...}`` / ``{"state_dict": ...}`` or saved with DDP's ``module.`` prefix);
* a Hugging Face model folder (``config.json`` with ``model_type: sam`` and ``model.safetensors``
  or ``pytorch_model.bin``, possibly sharded), read from disk only, never from the hub;
* a single ``.safetensors`` file in either key layout;
* LiteMedSAM's ``lite_medsam.pth`` (a TinyViT image encoder with SAM's prompt encoder and decoder,
  architecture ``litemedsam``).

Loading is strict: after renaming (:mod:`tskd.teacher.keymap`) and adapting
(:mod:`tskd.teacher.adapt`) every tensor must be used and none may be missing, otherwise a
:class:`~tskd.errors.CheckpointError` names the file and the mismatched keys. The base file's
SHA-256 is recorded (hashed once per process per path, size and modification time).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from safetensors.torch import load_file
from transformers import SamModel

from tskd.errors import CheckpointError
from tskd.teacher.adapt import adapt_mask_tokens, resize_position_tables
from tskd.teacher.architectures import (
    ARCHITECTURES,
    FOUNDATION_ARCHITECTURES,
    PATCH_SIZE,
    build_sam,
    check_input_size,
    get_architecture,
)
from tskd.teacher.digest import CHECKPOINT_HELP, checkpoint_sha256, file_sha256
from tskd.teacher.digest import hf_weight_files as _hf_weight_files
from tskd.teacher.keymap import fill_tied_keys, key_layout, official_to_hf
from tskd.teacher.model import SamSegmenter

__all__ = [
    "BaseCheckpoint",
    "CHECKPOINT_HELP",
    "file_sha256",
    "checkpoint_sha256",
    "read_state_dict",
    "detect_architecture",
    "load_sam",
    "load_pretrained_segmenter",
]

logger = logging.getLogger(__name__)

_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class BaseCheckpoint:
    """Where a teacher's foundation weights came from.

    Args:
        path: absolute path of the file or Hugging Face folder.
        sha256: hex SHA-256 (of the file; for a folder, of its weight files, see :func:`checkpoint_sha256`).
        size: bytes (of the weight files for a folder).
        architecture: registry name detected from the weights.
        layout: ``"official"`` (segment-anything names) or ``"hf"`` (``transformers`` names).
        native_input_size: input size the position tables were made for (1024 for SAM).
    """

    path: str
    sha256: str
    size: int
    architecture: str
    layout: str
    native_input_size: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint file or Hugging Face folder, with its own key names.

    Raises:
        CheckpointError: the path is missing or holds no readable state dict.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found; {CHECKPOINT_HELP}")
    if path.is_dir():
        return _read_hf_folder(path)
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch(path)


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    try:
        return dict(load_file(str(path), device="cpu"))
    except Exception as exc:  # noqa: BLE001 - a damaged file fails in the Rust reader in several ways
        raise CheckpointError(f"{path}: not a readable .safetensors file ({exc}); {CHECKPOINT_HELP}") from exc


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - arbitrary bytes make the unpickler fail in arbitrary ways
        raise CheckpointError(
            f"{path}: not a PyTorch checkpoint that can be read safely (weights only): {exc}; {CHECKPOINT_HELP}"
        ) from exc
    return _unwrap(loaded, path)


def _unwrap(loaded: Any, path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside ``loaded``: itself, or under ``model`` / ``state_dict``; ``module.`` stripped."""
    if isinstance(loaded, Mapping):
        for inner in ("model", "state_dict", "model_state_dict"):
            if inner in loaded and isinstance(loaded[inner], Mapping):
                loaded = loaded[inner]
                break
    if not isinstance(loaded, Mapping) or not loaded or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise CheckpointError(f"{path}: holds no state dict of tensors; {CHECKPOINT_HELP}")
    state = {str(k): v for k, v in loaded.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _read_hf_folder(folder: Path) -> dict[str, torch.Tensor]:
    config = folder / "config.json"
    if not config.is_file():
        raise CheckpointError(f"{folder}: a folder is read as a Hugging Face model but has no config.json; {CHECKPOINT_HELP}")
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, AttributeError) as exc:
        raise CheckpointError(f"{config}: not valid JSON ({exc})") from exc
    if model_type != "sam":
        raise CheckpointError(f"{folder}: config.json says model_type {model_type!r}, not 'sam'; {CHECKPOINT_HELP}")
    state: dict[str, torch.Tensor] = {}
    for file in _hf_weight_files(folder):
        state.update(_read_safetensors(file) if file.suffix == ".safetensors" else _read_torch(file))
    return state


def _to_hf_layout(state: dict[str, torch.Tensor], path: Path) -> tuple[dict[str, torch.Tensor], str]:
    layout = key_layout(state.keys())
    if layout is None:
        shown = ", ".join(list(state)[:_SHOWN])
        raise CheckpointError(
            f"{path}: not a SAM checkpoint: none of its {len(state)} keys start with 'image_encoder.' or "
            f"'vision_encoder.' (first keys: {shown}); {CHECKPOINT_HELP}"
        )
    if layout == "official":
        if any(k.startswith("image_encoder.trunk.") for k in state):
            raise CheckpointError(f"{path}: looks like a SAM 2 checkpoint, which is not supported; {CHECKPOINT_HELP}")
        state = official_to_hf(state)
    return fill_tied_keys(dict(state)), layout


def detect_architecture(state: Mapping[str, torch.Tensor], *, path: str | Path = "checkpoint") -> str:
    """Registry name of the SAM size whose encoder width and depth match ``transformers``-layout weights.

    ViT-B weights are reported as ``medsam`` when the file or folder name contains "medsam"; a
    TinyViT encoder (LiteMedSAM's) as ``litemedsam`` when its stage widths and depths are the
    published ones.

    Raises:
        CheckpointError: no encoder weights, or a width/depth no registered architecture has.
    """
    if "vision_encoder.patch_embed.seq.0.c.weight" in state:
        return _detect_tiny_vit(state, path)
    patch = state.get("vision_encoder.patch_embed.projection.weight")
    layers = {int(m.group(1)) for k in state if (m := re.match(r"^vision_encoder\.layers\.(\d+)\.", k))}
    if patch is None or patch.ndim != 4 or not layers:
        raise CheckpointError(f"{path}: no SAM image encoder weights (patch embedding and blocks); {CHECKPOINT_HELP}")
    width, depth = int(patch.shape[0]), max(layers) + 1
    for name in ARCHITECTURES:
        arch = get_architecture(name)
        if arch.encoder != "vit":
            continue
        if name != "medsam" and (arch.encoder_width, arch.encoder_depth) == (width, depth):
            if name == "vit_b" and "medsam" in Path(path).name.lower():
                return "medsam"
            return name
    known = ", ".join(
        f"{n} ({get_architecture(n).encoder_width} wide, {get_architecture(n).encoder_depth} deep)" for n in ARCHITECTURES
    )
    raise CheckpointError(
        f"{path}: its image encoder is {width} wide and {depth} deep, which matches no known SAM architecture "
        f"({known}); {CHECKPOINT_HELP}"
    )


def _detect_tiny_vit(state: Mapping[str, torch.Tensor], path: str | Path) -> str:
    """``litemedsam`` when the TinyViT's stage widths and depths are those of the published model."""
    found_widths, found_depths = [], []
    for stage in range(4):
        prefix = f"vision_encoder.layers.{stage}.blocks."
        blocks = {int(k[len(prefix):].split(".", 1)[0]) for k in state if k.startswith(prefix)}
        found_depths.append(max(blocks) + 1 if blocks else 0)
        weight = state.get(f"{prefix}0.conv1.c.weight" if stage == 0 else f"{prefix}0.attn.proj.weight")
        found_widths.append(int(weight.shape[0]) if weight is not None else 0)
    for name in ARCHITECTURES:
        arch = get_architecture(name)
        if arch.encoder == "tinyvit":
            spec = arch.tiny_vit_spec()
            expected_widths = [spec.widths[0] * int(spec.conv_expand), *spec.widths[1:]]
            if found_widths == expected_widths and found_depths == list(spec.depths):
                return name
    raise CheckpointError(
        f"{path}: its image encoder is a TinyViT with stage widths {found_widths} and depths {found_depths}, "
        f"which is not LiteMedSAM's; {CHECKPOINT_HELP}"
    )


def _same_shape(a: str, b: str) -> bool:
    x, y = get_architecture(a), get_architecture(b)
    return dataclasses.replace(x, name="") == dataclasses.replace(y, name="")


def load_sam(
    path: str | Path,
    *,
    architecture: str = "auto",
    input_size: int = 1024,
    num_classes: int = 2,
) -> tuple[SamModel, BaseCheckpoint]:
    """A :class:`~transformers.SamModel` with the checkpoint's weights, for ``input_size`` and ``K`` classes.

    Args:
        path: official ``.pth``, ``.safetensors`` file, or Hugging Face model folder.
        architecture: ``"auto"`` (detect) or a registry name, which must match the weights.
        input_size: side ``S`` of the input; position tables are resized when it differs from
            the checkpoint's native size.
        num_classes: ``K``; the decoder's mask tokens are adapted to ``K + 1`` (see :mod:`tskd.teacher.adapt`).

    Returns:
        the model (CPU, float32) and the description of the checkpoint.

    Raises:
        CheckpointError: the file is missing, unreadable, of another model, or does not match.
    """
    check_input_size(input_size)
    path = Path(path).expanduser().resolve()
    raw = read_state_dict(path)
    state, layout = _to_hf_layout(raw, path)
    detected = detect_architecture(state, path=path)
    if architecture not in ("auto", detected):
        if architecture not in ARCHITECTURES:
            raise CheckpointError(f"architecture {architecture!r} is not one of auto, {', '.join(ARCHITECTURES)}")
        if not _same_shape(architecture, detected):
            raise CheckpointError(
                f"{path}: holds SAM {detected} weights but architecture {architecture!r} was asked; "
                "set the teacher architecture to 'auto' or to the checkpoint's size"
            )
        detected = architecture
    arch = get_architecture(detected)
    if detected not in FOUNDATION_ARCHITECTURES:
        logger.info("%s holds weights of the small '%s' layout (not a published foundation model)", path, detected)
    pos = state.get("vision_encoder.pos_embed")
    native = int(pos.shape[1]) * PATCH_SIZE if pos is not None and pos.ndim == 4 else arch.native_input_size

    if arch.encoder == "vit":
        grid = input_size // PATCH_SIZE
        resized = resize_position_tables(state, global_attn_indexes=arch.global_attn_indexes, grid=grid)
        if resized:
            logger.info("resized %d position tables from %d px to %d px input", len(resized), native, input_size)
    elif input_size != native:  # TinyViT: no position tables (its attention biases are per window)
        logger.warning("%s: %s was trained at %d px; it runs at %d px but was not trained for it",
                       path, detected, native, input_size)
    if adapt_mask_tokens(state, num_classes + 1):
        logger.info("adapted the mask decoder to %d classes (pretrained mask heads copied cyclically)", num_classes)

    model = build_sam(arch, input_size=input_size, num_classes=num_classes, device="meta")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    _check_keys(state, expected, path, detected)
    state = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.prompt_encoder.shared_embedding.positional_embedding = model.shared_image_embedding.positional_embedding
    still_meta = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if still_meta:
        raise CheckpointError(f"{path}: no weights for {', '.join(still_meta[:_SHOWN])}")
    model.eval()
    sha, size = checkpoint_sha256(path)
    info = BaseCheckpoint(
        path=str(path), sha256=sha, size=size, architecture=detected, layout=layout, native_input_size=native
    )
    logger.info("loaded SAM %s from %s (%s layout, sha256 %s)", detected, path, layout, sha[:12])
    return model, info


def _check_keys(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], path: Path, arch: str) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(state) & set(expected) if tuple(state[k].shape) != expected[k])
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing ({_first(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
    if wrong:
        shown = [f"{k} {tuple(state[k].shape)} instead of {expected[k]}" for k in wrong[:_SHOWN]]
        parts.append(f"{len(wrong)} of the wrong shape ({', '.join(shown)}{', ...' if len(wrong) > _SHOWN else ''})")
    raise CheckpointError(
        f"{path}: does not match SAM {arch}: " + "; ".join(parts)
        + f" (key names in the transformers layout); {CHECKPOINT_HELP}"
    )


def _first(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN]) + (", ..." if len(keys) > _SHOWN else "")


def load_pretrained_segmenter(
    path: str | Path,
    *,
    architecture: str = "auto",
    input_size: int = 1024,
    num_classes: int = 2,
) -> SamSegmenter:
    """A :class:`~tskd.teacher.model.SamSegmenter` on foundation weights (no LoRA yet, all weights trainable).

    Arguments as for :func:`load_sam`.
    """
    sam, info = load_sam(path, architecture=architecture, input_size=input_size, num_classes=num_classes)
    return SamSegmenter(
        sam=sam, num_classes=num_classes, architecture=info.architecture, has_foundation_weights=True, base=info
    )
