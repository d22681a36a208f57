"""The per-user cache of foundation weights: ``$TSKD_HOME/checkpoints`` and its registry.

``TSKD_HOME`` defaults to the platform's per-user data folder, the same one the Slicer module's
backend environment lives in (``SlicerTSKDLib.install.environment.defaultEnvironmentRoot``)::

    Linux    ${XDG_DATA_HOME:-~/.local/share}/SlicerTSKD
    macOS    ~/Library/Application Support/SlicerTSKD
    Windows  %LOCALAPPDATA%/SlicerTSKD

    TSKD_HOME/
      backend/                     the Slicer module's Python environment (not ours)
      checkpoints/
        registry.json              what is here: name -> file, SHA-256, size, architecture, origin
        sam_vit_b_01ec64.pth       a downloaded catalog file, under its catalog file name
        medsam-vit-b/              a Hugging Face folder (config.json + model.safetensors)
        my-sam.pth                 an imported file, under its import name
        .sam_vit_b_01ec64.pth.part a download in progress (resumed by the next 'get')

The registry is written atomically under a lock file, so the CLI and the service can share the
folder. A file is *verified* when its SHA-256 matched what was expected when it was recorded and
its size and modification time have not changed since.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

from tskd.atomic import write_json
from tskd.errors import ConfigError

__all__ = [
    "TSKD_HOME_ENV",
    "WEIGHTS_NAME_PATTERN",
    "tskd_home",
    "default_cache_dir",
    "embeddings_dir",
    "CachedWeights",
    "WeightsCache",
    "check_weights_name",
]

logger = logging.getLogger(__name__)

TSKD_HOME_ENV = "TSKD_HOME"
REGISTRY = "registry.json"
#: A weights name (catalog or imported), as the service's /openapi.json states it.
WEIGHTS_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
_NAME = re.compile(WEIGHTS_NAME_PATTERN.replace("$", r"\Z"))


def tskd_home(environ: Mapping[str, str] | None = None, *, platform: str | None = None,
              home: str | Path | None = None) -> Path:
    """``$TSKD_HOME``, or the platform's per-user data folder + ``SlicerTSKD``.

    Args:
        environ: the environment to read (default ``os.environ``).
        platform: ``sys.platform`` to assume (for tests).
        home: the user's home folder (default ``Path.home()``).
    """
    environ = os.environ if environ is None else environ
    if environ.get(TSKD_HOME_ENV):
        return Path(environ[TSKD_HOME_ENV]).expanduser()
    platform = platform or sys.platform
    home = Path(home) if home is not None else Path.home()
    if platform.startswith("win"):
        base = Path(environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "SlicerTSKD"


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``tskd_home() / "checkpoints"``."""
    return tskd_home(environ) / "checkpoints"


def embeddings_dir(setting: str | Path) -> Path:
    """The folder a ``teacher.embedding_cache`` setting names (:mod:`tskd.teacher.embedding_cache`):
    ``"auto"`` is ``tskd_home() / "embeddings"``, shared by every run, ``tskd suggest`` and
    ``tskd teacher predict`` on the same images; anything else is that folder."""
    return tskd_home() / "embeddings" if str(setting) == "auto" else Path(setting).expanduser()


def check_weights_name(name: str) -> str:
    """``name`` when it can name weights in the cache, else :class:`ConfigError` saying what is allowed."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise ConfigError(
            f"weights name {name!r} is not allowed: use 1-64 lower-case letters, digits, '.', '_' and '-', "
            "starting with a letter or digit (e.g. 'my-sam-vit-b')"
        )
    return name


@dataclasses.dataclass(frozen=True)
class CachedWeights:
    """One registry record.

    Args:
        name: catalog name (``sam-vit-b``) or the name given at import.
        path: file or folder name inside the cache.
        sha256: what :func:`tskd.teacher.digest.checkpoint_sha256` gives (a file's SHA-256; for a
            Hugging Face folder, the digest of its weight files' hashes).
        size: bytes (of the weight files for a folder).
        architecture: detected (imports) or the catalog's (downloads).
        origin: ``download`` or ``import``.
        catalog: the catalog entry this is, or None for other weights.
        verified_against: what the hash was checked against (``catalog sha256``, ``recorded on first
            download``...).
        source: the URL, repository or original file it came from.
        mtime_ns: modification time when recorded (a later change makes it unverified).
        recorded: Unix time of the record.
        files: per-file SHA-256 of a folder's weight files.
    """

    name: str
    path: str
    sha256: str
    size: int
    architecture: str
    origin: str
    catalog: str | None = None
    verified_against: str | None = None
    source: str | None = None
    mtime_ns: int = 0
    recorded: float = 0.0
    files: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _stat_of(path: Path) -> tuple[int, int]:
    """(size, newest mtime) of a file, or of a folder's files."""
    if path.is_file():
        stat = path.stat()
        return stat.st_size, stat.st_mtime_ns
    files = [p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")]
    return sum(p.stat().st_size for p in files), max((p.stat().st_mtime_ns for p in files), default=0)


class WeightsCache:
    """The cache folder and its registry.

    Args:
        root: the folder (default :func:`default_cache_dir`); created on first write.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).expanduser() if root is not None else default_cache_dir()

    @property
    def registry_path(self) -> Path:
        return self.root / REGISTRY

    def path_of(self, record: CachedWeights) -> Path:
        return self.root / record.path

    # -- registry -------------------------------------------------------------------------------
    def records(self) -> dict[str, CachedWeights]:
        """All registry records by name (empty when the cache does not exist yet)."""
        try:
            data = json.loads(self.registry_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{self.registry_path}: not readable JSON ({exc}); move it away and run "
                              "'tskd foundation get' / 'import' again to rebuild it") from None
        fields = {f.name for f in dataclasses.fields(CachedWeights)}
        out = {}
        for name, item in (data.get("weights") or {}).items():
            try:
                out[name] = CachedWeights(**{k: v for k, v in item.items() if k in fields})
            except TypeError as exc:
                logger.warning("%s: ignoring the malformed record %r (%s)", self.registry_path, name, exc)
        return out

    def get(self, name: str) -> CachedWeights | None:
        return self.records().get(name)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".registry.lock", "a+") as handle:
            try:
                import fcntl

                fcntl.flock(handle, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - Windows: writes are still atomic, just not serialised
                pass
            yield

    def _write(self, records: dict[str, CachedWeights]) -> None:
        write_json(self.registry_path, {"version": 1, "weights": {n: r.to_dict() for n, r in sorted(records.items())}})

    def record(self, record: CachedWeights) -> CachedWeights:
        """Add or replace ``record`` (its file must already be in place); returns it with size/mtime filled."""
        check_weights_name(record.name)
        path = self.root / record.path
        size, mtime = _stat_of(path)
        record = dataclasses.replace(record, mtime_ns=mtime, recorded=time.time(), size=record.size or size)
        with self._locked():
            records = self.records()
            records[record.name] = record
            self._write(records)
        logger.info("recorded %s in %s (sha256 %s)", record.name, self.registry_path, record.sha256[:12])
        return record

    def forget(self, name: str) -> CachedWeights | None:
        with self._locked():
            records = self.records()
            removed = records.pop(name, None)
            if removed is not None:
                self._write(records)
        return removed

    # -- state ----------------------------------------------------------------------------------
    def state(self, record: CachedWeights) -> str:
        """``verified``, ``changed`` (size or modification time differ from the record) or ``missing``."""
        path = self.path_of(record)
        if not path.exists():
            return "missing"
        size, mtime = _stat_of(path)
        if size != record.size or mtime != record.mtime_ns:
            return "changed"
        return "verified"

    def partial_download(self, file_name: str) -> Path:
        """Where the download of ``file_name`` is kept until it is verified."""
        return self.root / f".{file_name}.part"

    def remove(self, name: str) -> CachedWeights:
        """Delete the weights called ``name`` (file or folder) and their record.

        Raises:
            ConfigError: nothing of that name is in the cache.
        """
        record = self.get(name)
        if record is None:
            known = ", ".join(sorted(self.records())) or "none"
            raise ConfigError(f"no weights named {name!r} in {self.root}; present: {known}")
        path = self.path_of(record)
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        self.forget(name)
        return record
