"""What the cache holds, and turning ``--base`` values into checkpoint paths.

``--base`` accepts, besides ``none`` and a path: a catalog name (``medsam-vit-b``), the name of
imported weights, and ``auto``: the best foundation model present for medical images, in the order
of :func:`preference_order`, then imported weights; with nothing present ``auto`` means ``none``
(the from-scratch teacher) and the log says which command gets one.

The order depends on where the teacher trains, and this is the one place that decides it:

* on a CUDA GPU, the catalog's order: MedSAM ViT-B, LiteMedSAM, SAM ViT-B, ViT-L, ViT-H;
* on the CPU (no GPU, or ``device: cpu``), the entries marked ``prefer_without_gpu`` first
  (LiteMedSAM: 39 MB, a 256-px TinyViT encoder that runs on a laptop CPU), then the others in the
  catalog's order.

:func:`list_weights` lists in the same order, so the service's ``GET /checkpoints``, its ``auto``
and the Slicer chooser's default (the first usable row) follow it too.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

from tskd.errors import ConfigError
from tskd.foundation.cache import WeightsCache
from tskd.foundation.catalog import CatalogEntry, load_catalog

__all__ = ["AUTO", "GET_HINT", "has_gpu", "trains_on_gpu", "preference_order", "list_weights", "resolve_base",
           "is_weights_name", "name_of_checkpoint"]

logger = logging.getLogger(__name__)

AUTO = "auto"
GET_HINT = ("'tskd foundation get litemedsam' (39 MB, runs on a CPU; with a GPU: medsam-vit-b) downloads one; "
            "offline: 'tskd foundation import FILE'")


@functools.lru_cache(maxsize=1)
def has_gpu() -> bool:
    """Whether torch sees a CUDA GPU here (training's ``device: auto`` then uses it); asked once per
    process (the first call imports torch: about 2 s on a laptop)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def trains_on_gpu(device: str = "auto") -> bool:
    """Whether a teacher with the ``device`` setting (``auto``, ``cpu``, ``cuda``) trains on a GPU."""
    return device == "cuda" or (device == "auto" and has_gpu())


def preference_order(device: str = "auto") -> list[CatalogEntry]:
    """The catalog in the order ``--base auto`` tries it for a teacher on ``device``.

    Args:
        device: the teacher's device setting: ``auto`` (a GPU when torch sees one), ``cpu`` or ``cuda``.

    Returns:
        On a GPU the catalog's order (MedSAM ViT-B first); on the CPU the entries marked
        ``prefer_without_gpu`` (LiteMedSAM) first, then the others in the catalog's order.
    """
    entries = list(load_catalog())
    if trains_on_gpu(device):
        return entries
    return [e for e in entries if e.prefer_without_gpu] + [e for e in entries if not e.prefer_without_gpu]


def list_weights(cache: WeightsCache | None = None, device: str = "auto") -> list[dict[str, Any]]:
    """Every catalog entry (present or not) in :func:`preference_order` for ``device``, then every other
    cached weights, as rows for display.

    Each row: ``name``, ``title``, ``architecture``, ``licence``, ``catalog`` (bool), ``state``
    (``verified``, ``changed``, ``missing`` when recorded but gone, ``absent``), ``path``, ``size``,
    ``sha256``, ``origin``, ``how`` (how to get it when absent).
    """
    cache = cache or WeightsCache()
    records = cache.records()
    rows = []
    for entry in preference_order(device):
        record = records.pop(entry.name, None)
        source = entry.download_source
        manual = entry.source("manual")
        how = f"tskd foundation get {entry.name}" if source else (
            f"download {manual.file} from {manual.url}, then tskd foundation import FILE" if manual else "")
        if source is not None and manual is not None:
            how += f" (or import {manual.file})"
        rows.append({
            "name": entry.name, "title": entry.title, "architecture": entry.architecture, "licence": entry.licence,
            "catalog": True, "state": cache.state(record) if record else "absent",
            "path": str(cache.path_of(record)) if record else None,
            "size": record.size if record else (source.size if source else (manual.size if manual else None)),
            "sha256": record.sha256 if record else None, "origin": record.origin if record else None, "how": how,
        })
    for name, record in sorted(records.items()):
        rows.append({
            "name": name, "title": f"imported from {record.source}", "architecture": record.architecture,
            "licence": None, "catalog": False, "state": cache.state(record), "path": str(cache.path_of(record)),
            "size": record.size, "sha256": record.sha256, "origin": record.origin, "how": "",
        })
    return rows


def is_weights_name(value: str | None) -> bool:
    """True for ``auto`` and catalog names (values that are never paths relative to a config file)."""
    return bool(value) and (value == AUTO or value in {e.name for e in load_catalog()})


def resolve_base(value: str | None, cache: WeightsCache | None = None, device: str = "auto") -> str | None:
    """The checkpoint path (or ``none``) a ``--base`` value stands for.

    Args:
        value: ``None`` (unchanged), ``none``, a path, ``auto``, a catalog name or an imported name.
        cache: the cache (default ``$TSKD_HOME/checkpoints``).
        device: the teacher's device setting (``auto``, ``cpu``, ``cuda``): the order ``auto`` tries
            the catalog in (:func:`preference_order`).

    Raises:
        ConfigError: a catalog or cache name whose weights are absent or changed since recorded
            (the message gives the command that gets them).
    """
    if value is None or value.lower() == "none":
        return value
    if Path(value).expanduser().exists():
        return value
    cache = cache or WeightsCache()
    records = cache.records()
    if value == AUTO:
        catalog_order = [e.name for e in preference_order(device)]
        order = catalog_order + sorted(n for n in records if n not in set(catalog_order))
        where = "a GPU" if trains_on_gpu(device) else "the CPU"
        for name in order:
            record = records.get(name)
            if record is not None and cache.state(record) == "verified":
                path = str(cache.path_of(record))
                logger.info("--base auto: using %s (%s, %s; the teacher trains on %s, so the order is %s)", name,
                            record.architecture, path, where, ", ".join(catalog_order))
                return path
        logger.warning("--base auto: no foundation model in %s, so the teacher is trained from scratch "
                       "(much less accurate); %s", cache.root, GET_HINT)
        return "none"
    catalog = {e.name for e in load_catalog()}
    record = records.get(value)
    if record is None:
        if value in catalog:
            raise ConfigError(f"--base {value}: not in the cache {cache.root}; run 'tskd foundation get {value}' "
                              "(offline: 'tskd foundation import FILE')")
        if "/" in value or "\\" in value or "." in Path(value).name:
            raise ConfigError(f"--base {value}: no such file or folder")
        known = ", ".join(sorted(set(catalog) | set(records)))
        raise ConfigError(f"--base {value}: neither a file nor a foundation model name; names: auto, none, {known}")
    state = cache.state(record)
    if state != "verified":
        raise ConfigError(
            f"--base {value}: {cache.path_of(record)} is {state} since it was recorded; run 'tskd foundation "
            f"remove {value}' and get or import it again"
        )
    return str(cache.path_of(record))


def name_of_checkpoint(path: str | Path | None, sha256: str | None = None,
                       cache: WeightsCache | None = None) -> str | None:
    """The cache name of the weights at ``path`` (or with ``sha256``), or None."""
    if not path and not sha256:
        return None
    cache = cache or WeightsCache()
    try:
        records = cache.records()
    except ConfigError:
        return None
    resolved = Path(path).expanduser().resolve() if path else None
    for name, record in records.items():
        if (resolved is not None and cache.path_of(record).resolve() == resolved) or (sha256 and record.sha256 == sha256):
            return name
    return None
