"""Image embeddings of a frozen foundation encoder, computed once per image and kept on disk.

On a CPU the foundation encoder is what costs (LiteMedSAM: about 2 s per 256-px image on two cores;
a decoder step is a fraction of that). With the encoder frozen, an image's embedding never changes,
so it is computed the first time the image is seen and read back afterwards: by the teacher's
training (every epoch sees the same un-augmented slices), its validation, the transfer set's
labelling, ``tskd suggest``, and later runs on the same images.

Keys: the model's key (base checkpoint SHA-256, architecture, input size, input scaling and this
module's format version) names a folder; in it each embedding is a file named by the SHA-256 of
the exact float32 input the encoder would see (so it covers the image's content and all
preprocessing before the encoder: normalisation, resizing). Files are float16 ``.npy`` (a 256 x 64
x 64 embedding is 2 MiB), written atomically, so several processes can share a cache: the worst a
race does is compute an embedding twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from tskd.atomic import atomic_write

__all__ = ["EmbeddingCache", "FORMAT_VERSION"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class EmbeddingCache:
    """A folder of one frozen encoder's embeddings, keyed by input content.

    Args:
        root: the cache's top folder (the pipeline passes ``$TSKD_HOME/embeddings``).
        model_key: what identifies the encoder (see :meth:`key_for`).
    """

    def __init__(self, root: str | Path, model_key: dict) -> None:
        text = json.dumps({**model_key, "format": FORMAT_VERSION}, sort_keys=True)
        self.model_key = model_key
        self.folder = Path(root) / hashlib.sha256(text.encode()).hexdigest()[:24]
        self.hits = 0
        self.misses = 0
        self._described = False

    @staticmethod
    def key_for(base_sha256: str, architecture: str, input_size: int, input_scaling: str) -> dict:
        """The model key of a frozen foundation encoder."""
        return {"base_sha256": base_sha256, "architecture": architecture, "input_size": int(input_size),
                "input_scaling": input_scaling}

    def _path(self, digest: str) -> Path:
        return self.folder / digest[:2] / f"{digest}.npy"

    def _describe(self) -> None:
        if self._described:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        about = self.folder / "model.json"
        if not about.is_file():
            atomic_write(about, lambda tmp: tmp.write_text(json.dumps(self.model_key, indent=2) + "\n", encoding="utf-8"))
        self._described = True

    @torch.no_grad()
    def embeddings(self, encode: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
        """The embeddings of ``images`` ``(B, 1, S, S)``: read where cached, else ``encode``-d and stored.

        Args:
            encode: the frozen encoder, ``(b, 1, S, S) -> (b, C, G, G)``.
            images: the inputs, on any device.

        Returns:
            float32 ``(B, C, G, G)`` on the images' device, without gradient.
        """
        self._describe()
        host = images.detach().to("cpu", torch.float32).contiguous().numpy()
        digests = [hashlib.sha256(sample.tobytes()).hexdigest() for sample in host]
        found: dict[int, np.ndarray] = {}
        for index, digest in enumerate(digests):
            path = self._path(digest)
            if path.is_file():
                try:
                    found[index] = np.load(path, allow_pickle=False)
                except (OSError, ValueError) as exc:  # a damaged file is computed again
                    logger.warning("embedding cache: %s unreadable (%s); computing it again", path, exc)
        missing = [i for i in range(len(digests)) if i not in found]
        self.hits += len(found)
        self.misses += len(missing)
        computed = None
        if missing:
            computed = encode(images[missing]).float()
            for row, index in enumerate(missing):
                value = computed[row].to("cpu", torch.float16).numpy()
                path = self._path(digests[index])
                path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(path, lambda tmp, value=value: _save(tmp, value))
        rows = []
        position = {index: row for row, index in enumerate(missing)}
        for index in range(len(digests)):
            if index in found:
                rows.append(torch.from_numpy(found[index].astype(np.float32)).to(images.device))
            else:
                # what later reads will see: the float16 copy, so a run and its resumption agree
                rows.append(computed[position[index]].to(torch.float16).float())  # type: ignore[index]
        return torch.stack(rows)


def _save(path: Path, value: np.ndarray) -> None:
    with open(path, "wb") as handle:
        np.save(handle, value, allow_pickle=False)
