"""SHA-256 of foundation weights (a checkpoint file, or a Hugging Face folder's weight files).

Kept apart from :mod:`tskd.teacher.checkpoints` (which needs torch and transformers to load the
weights) so that what only hashes them stays light: ``tskd segment-box --model litemedsam`` finds
its exported ONNX graphs by the weights' hash, and the service names a workspace checkpoint by it,
without importing torch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Mapping

from tskd.errors import CheckpointError

__all__ = ["CHECKPOINT_HELP", "file_sha256", "checkpoint_sha256", "folder_digest", "hf_weight_files"]

CHECKPOINT_HELP = (
    "expected a SAM or MedSAM checkpoint: Meta's sam_vit_b_01ec64.pth / sam_vit_l_0b3195.pth / "
    "sam_vit_h_4b8939.pth (https://github.com/facebookresearch/segment-anything#model-checkpoints), "
    "MedSAM's medsam_vit_b.pth (https://github.com/bowang-lab/MedSAM), LiteMedSAM's lite_medsam.pth "
    "('tskd foundation get litemedsam'), a Hugging Face SAM model "
    "folder (config.json + model.safetensors) or a .safetensors file of either"
)
HF_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")

_HASH_CACHE: dict[tuple[str, int, int], str] = {}
_HASH_LOCK = threading.Lock()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, streamed; cached per (path, size, modification time) for the process."""
    path = Path(path).resolve()
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    with _HASH_LOCK:
        if key in _HASH_CACHE:
            return _HASH_CACHE[key]
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            digest.update(chunk)
    value = digest.hexdigest()
    with _HASH_LOCK:
        _HASH_CACHE[key] = value
    return value


def checkpoint_sha256(path: str | Path) -> tuple[str, int]:
    """``(sha256, size)`` of a checkpoint file, or of a Hugging Face folder's weight files.

    For a folder the digest is the SHA-256 of the lines ``"<file name> <file sha256>"`` of its
    weight files in sorted order, and the size is their total.
    """
    path = Path(path)
    if path.is_file():
        return file_sha256(path), path.stat().st_size
    files = hf_weight_files(path)
    return folder_digest({f.name: file_sha256(f) for f in files}), sum(f.stat().st_size for f in files)


def folder_digest(file_hashes: Mapping[str, str]) -> str:
    """The digest of a Hugging Face folder from its weight files' SHA-256 (name -> hex): the SHA-256 of the
    lines ``"<file name> <file sha256>"`` in name order (what a download records and a loaded folder checks)."""
    lines = "".join(f"{name} {sha}\n" for name, sha in sorted(file_hashes.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def hf_weight_files(folder: Path) -> list[Path]:
    """The weight files of a Hugging Face model folder (one file, or the shards its index names).

    Raises:
        CheckpointError: none of :data:`HF_WEIGHTS` is there, the index is broken or a shard is missing.
    """
    for name in HF_WEIGHTS:
        candidate = folder / name
        if not candidate.is_file():
            continue
        if not name.endswith(".index.json"):
            return [candidate]
        try:
            index = json.loads(candidate.read_text(encoding="utf-8"))
            shards = sorted(set(index["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError(f"{candidate}: not a valid weight index ({exc})") from exc
        missing = [s for s in shards if not (folder / s).is_file()]
        if missing:
            raise CheckpointError(f"{folder}: weight shard(s) {', '.join(missing)} named in {name} are missing")
        return [folder / s for s in shards]
    raise CheckpointError(
        f"{folder}: a Hugging Face model folder needs one of {', '.join(HF_WEIGHTS)}; {CHECKPOINT_HELP}"
    )
