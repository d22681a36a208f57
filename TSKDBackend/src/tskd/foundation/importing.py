"""``tskd foundation import``: an offline site's way to put weights into the cache.

The file (or Hugging Face folder) is checked to really be SAM-layout weights with the teacher's
own loader (:func:`tskd.teacher.checkpoints.load_sam`: key layout detected, architecture detected,
every tensor matched by name and shape), hashed, hard-linked (or copied) into the cache under a
hidden name, renamed into place and recorded. When its SHA-256 is that of a catalog file it is
recorded as that catalog entry (``medsam_vit_b.pth`` -> ``medsam-vit-b``, the Google Drive
``lite_medsam.pth`` -> ``litemedsam``). The loader is called with ``input_size=1024`` whatever the
architecture: no forward pass happens here, so LiteMedSAM's 256-px input does not matter.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from tskd.atomic import replace_folder, temporary_sibling
from tskd.errors import CheckpointError, ConfigError
from tskd.foundation.cache import CachedWeights, WeightsCache, check_weights_name
from tskd.foundation.catalog import CatalogEntry, load_catalog

__all__ = ["import_weights", "catalog_match"]

logger = logging.getLogger(__name__)

_SAME_SHAPE = {"medsam": "vit_b", "vit_b": "vit_b"}


def catalog_match(sha256: str) -> tuple[CatalogEntry, str] | None:
    """The catalog entry (and file name) whose published SHA-256 is ``sha256``, or None."""
    for entry in load_catalog():
        for source in entry.sources:
            if source.sha256 == sha256:
                return entry, source.file or entry.name
    return None


def _validate(path: Path) -> tuple[str, str, str, int]:
    """(architecture, layout, sha256, size) of SAM weights at ``path``; CheckpointError when they are not."""
    from tskd.teacher.checkpoints import load_sam

    try:
        _, info = load_sam(path, input_size=1024, num_classes=2)
    except CheckpointError as exc:
        raise CheckpointError(f"import refused: {exc}") from None
    return info.architecture, info.layout, info.sha256, info.size


def import_weights(path: str | Path, *, name: str | None = None, cache: WeightsCache | None = None,
                   link: bool = True) -> CachedWeights:
    """Check ``path`` holds SAM / MedSAM weights and add it to the cache.

    Args:
        path: an official-layout ``.pth`` / ``.safetensors`` file, a ``transformers``-layout
            ``.safetensors`` file, or a Hugging Face model folder.
        name: the name to record it under (default: the catalog name when the hash is a catalog
            file's, else the file name without its suffix, lower-cased).
        cache: the cache (default ``$TSKD_HOME/checkpoints``).
        link: hard-link a file into the cache when it is on the same file system (else copy).

    Raises:
        CheckpointError: not SAM-layout weights, truncated or unreadable (the message names the file
            and what was expected), or the hash contradicts the catalog entry asked for.
        ConfigError: a bad or already used name.
    """
    cache = cache or WeightsCache()
    path = Path(path).expanduser().resolve()
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    architecture, layout, sha, size = _validate(path)
    match = catalog_match(sha)
    catalog_names = {e.name: e for e in load_catalog()}
    if name is None:
        name = match[0].name if match else _default_name(path)
    check_weights_name(name)
    catalog = None
    if name in catalog_names:
        entry = catalog_names[name]
        if match is not None and match[0].name != name:
            raise CheckpointError(f"import refused: {path} is the catalog file of {match[0].name}, not of {name}; "
                                  f"import it without --name (or with --name {match[0].name})")
        if match is None:
            known = [s.sha256 for s in entry.sources if s.sha256]
            if known or _SAME_SHAPE.get(architecture, architecture) != _SAME_SHAPE.get(entry.architecture,
                                                                                      entry.architecture):
                raise CheckpointError(
                    f"import refused: {path} (SAM {architecture}, sha256 {sha}) is not {name}"
                    + (f" (expected sha256 {' or '.join(known)})" if known else f" (expected SAM {entry.architecture})")
                    + "; choose another --name for your own weights"
                )
        catalog = name
    elif cache.get(name) is not None and cache.get(name).sha256 != sha:  # type: ignore[union-attr]
        raise ConfigError(f"the cache already holds other weights named {name!r}; remove them first "
                          f"('tskd foundation remove {name}') or choose another --name")
    if match is not None and architecture == "vit_b" and match[0].architecture == "medsam":
        architecture = "medsam"  # the same tensors; the name decides (see detect_architecture)
    target_name = match[1] if match and match[0].name == name and path.is_file() else _target_name(name, path)
    target = cache.root / target_name
    cache.root.mkdir(parents=True, exist_ok=True)
    try:
        how = _place(path, target, link)
    except OSError as exc:
        raise CheckpointError(f"import of {path} into {cache.root} failed ({exc.strerror or exc}); free space there "
                              "or set TSKD_HOME to a folder on a larger disk") from None
    verified = "catalog sha256" if match else (
        "recorded at import" if catalog is None else "recorded at import (the catalog has no hash for it)")
    files = {}
    if path.is_dir():
        from tskd.teacher.digest import file_sha256, hf_weight_files

        files = {f.name: file_sha256(f) for f in hf_weight_files(target)}
    record = cache.record(CachedWeights(
        name=name, path=target_name, sha256=sha, size=size, architecture=architecture, origin="import",
        catalog=catalog, verified_against=verified, source=str(path), files=files,
    ))
    logger.info("imported %s as %s (%s, %s layout, %s into %s)", path, name, architecture, layout, how, target)
    return record


def _default_name(path: Path) -> str:
    stem = path.name
    for suffix in (".safetensors", ".pth", ".pt", ".bin"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem.lower()).strip("-._")
    return cleaned[:64] or "imported"


def _target_name(name: str, path: Path) -> str:
    return name if path.is_dir() else name + "".join(path.suffixes[-1:]).lower()


def _place(source: Path, target: Path, link: bool) -> str:
    """Put ``source`` at ``target`` atomically; returns 'hard-linked' or 'copied'."""
    if source.is_dir():
        tmp = temporary_sibling(target, ".import")
        try:
            shutil.copytree(source, tmp)
            replace_folder(tmp, target)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return "copied"
    tmp = temporary_sibling(target, ".import")
    how = "copied"
    try:
        if link:
            try:
                os.link(source, tmp)
                how = "hard-linked"
            except OSError:
                pass
        if how == "copied":
            shutil.copyfile(source, tmp)
            if tmp.stat().st_size != source.stat().st_size:
                raise CheckpointError(f"copying {source} to {tmp} gave a file of another size; is the disk full?")
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return how
