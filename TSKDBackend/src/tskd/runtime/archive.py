"""Unpacking a ``.tskd.zip`` safely into a cache folder.

A zip from a download is untrusted: members with absolute paths, ``..`` or drive letters, symbolic
links, and archives that unpack to more than :data:`MAX_UNPACKED_BYTES` are refused before
anything is written. The package is unpacked into ``.tskd-cache/<name>-<hash>/`` next to the zip
(a temporary folder when that is not writable), under a temporary name renamed when complete, and
reused while the zip is unchanged.

Standard library only, Python 3.9 syntax: shipped into Slicer.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import List, Optional, Tuple

from .format import METADATA_NAME, PACKAGE_SUFFIX, PackageError, PathLike

__all__ = ["MAX_UNPACKED_BYTES", "unpack_zip"]

logger = logging.getLogger(__name__)

#: Largest total unpacked size accepted from a zip (a student is tens of MB at most).
MAX_UNPACKED_BYTES = 4 << 30


def _zip_members(archive: zipfile.ZipFile, source: Path) -> List[Tuple[zipfile.ZipInfo, PurePosixPath]]:
    """The file members and their safe relative paths; raises on anything unsafe."""
    members = []
    total = 0
    for info in archive.infolist():
        name = info.filename.replace("\\", "/")
        parts = PurePosixPath(name).parts
        if name.startswith("/") or (parts and ":" in parts[0]) or ".." in parts:
            raise PackageError(f"{source}: unsafe member '{info.filename}' (absolute path or '..'); not unpacked")
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise PackageError(f"{source}: member '{info.filename}' is a symbolic link; not unpacked")
        if info.is_dir():
            continue
        total += info.file_size
        if total > MAX_UNPACKED_BYTES:
            raise PackageError(f"{source}: unpacks to more than {MAX_UNPACKED_BYTES >> 30} GiB; not a student package")
        members.append((info, PurePosixPath(*parts)))
    return members


def _package_root(members: List[Tuple[zipfile.ZipInfo, PurePosixPath]], source: Path,
                  metadata_name: str = METADATA_NAME) -> PurePosixPath:
    """Where ``metadata_name`` (``tskd-model.json``) lies in the zip: the root, or one folder inside."""
    roots = [path.parent for _, path in members if path.name == metadata_name and len(path.parts) <= 2]
    if len(roots) != 1:
        found = "no" if not roots else f"{len(roots)}"
        if metadata_name != METADATA_NAME:
            raise PackageError(f"{source}: {found} {metadata_name} at the top of the zip; download it again")
        raise PackageError(
            f"{source}: {found} {METADATA_NAME} at the top of the zip; a {PACKAGE_SUFFIX} holds one package "
            f"(model.onnx and {METADATA_NAME}, at the top or in one folder)"
        )
    return roots[0]


def _zip_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _cache_parent(zip_path: Path, cache_dir: Optional[PathLike]) -> Path:
    candidates = [Path(cache_dir)] if cache_dir is not None else []
    candidates += [zip_path.parent / ".tskd-cache", Path(tempfile.gettempdir()) / "tskd-packages"]
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=candidate, prefix=".probe", delete=True)
            probe.close()
            return candidate
        except OSError:
            continue
    raise PackageError(f"{zip_path}: no writable folder to unpack it into (tried {', '.join(map(str, candidates))})")


def unpack_zip(path: PathLike, cache_dir: Optional[PathLike] = None, *, metadata_name: str = METADATA_NAME) -> Path:
    """Unpack a ``.tskd.zip`` safely and return the package folder inside the cache.

    The cache folder is named after the zip's name and content hash, so unpacking the same file
    again reuses it and a changed file gets a fresh folder. Unpacking goes to a temporary folder
    that is renamed when complete.

    Args:
        path: the zip file.
        cache_dir: where to unpack (default: ``.tskd-cache`` next to the zip, else a temporary folder).
        metadata_name: the file that marks the folder to unpack (default ``tskd-model.json``; the box
            model's zip has ``box_model.json``, :func:`tskd.runtime.box_model.unpack_box_model`).

    Raises:
        PackageError: not a zip, unsafe members, or no package inside.
    """
    path = Path(path).expanduser()
    if not zipfile.is_zipfile(path):
        raise PackageError(f"{path}: not a zip file (or a damaged one); download the {PACKAGE_SUFFIX} again")
    with zipfile.ZipFile(path) as archive:
        members = _zip_members(archive, path)
        root = _package_root(members, path, metadata_name)
        parent = _cache_parent(path, cache_dir)
        stem = path.name[: -len(PACKAGE_SUFFIX)] if path.name.lower().endswith(PACKAGE_SUFFIX) else path.stem
        target = parent / f"{stem}-{_zip_digest(path)}"
        if (target / metadata_name).is_file():
            return target
        work = Path(tempfile.mkdtemp(prefix=f".{stem}.", dir=parent))
        os.chmod(work, 0o755)  # mkdtemp makes it private; the unpacked package is an ordinary folder
        try:
            for info, relative in members:
                if root.parts and relative.parts[: len(root.parts)] != root.parts:
                    continue
                inside = relative.parts[len(root.parts):]
                destination = work.joinpath(*inside)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as source, open(destination, "wb") as out:
                    shutil.copyfileobj(source, out, 1 << 20)
            try:
                os.replace(work, target)
            except OSError:
                if not (target / metadata_name).is_file():  # not another process unpacking it first
                    raise
        except zipfile.BadZipFile as exc:
            raise PackageError(f"{path}: damaged zip ({exc}); download the {PACKAGE_SUFFIX} again") from None
        finally:
            if work.exists():
                shutil.rmtree(work, ignore_errors=True)
    logger.info("unpacked %s into %s", path, target)
    return target
