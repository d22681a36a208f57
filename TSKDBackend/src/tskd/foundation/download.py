"""Downloading one file so that a failed or interrupted download never looks complete.

The bytes go to a ``.part`` file beside the final name; a later call resumes it with an HTTP
``Range`` request. One process at a time writes a ``.part`` (:mod:`tskd.foundation.partlock`):
a second one waits, then finds the file done (or resumes what the first left). Only when the whole file is there and its size and hashes match what was
expected is it renamed (atomically, same folder) to its final name. A file that arrives complete
but with the wrong hash is deleted (resuming it could never help).

Errors (:class:`~tskd.errors.DownloadError`) say what happened and what to do: HTTP 404, a server
that stalls past the timeout, a full disk, an HTML page (a proxy's login or error page) instead of
the weights. Transient failures (time-outs, connection resets, HTTP 5xx / 429) are retried with
exponential back-off, each retry resuming where the last one stopped.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import logging
import os
import socket
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

from tskd.errors import CancelledError, CheckpointError, DownloadError
from tskd.foundation.partlock import part_lock
from tskd.progress import ProgressEvent, ProgressReporter

__all__ = ["Expected", "download_file", "hash_file", "report_progress", "USER_AGENT"]

logger = logging.getLogger(__name__)

USER_AGENT = "tskd-foundation/1"
_CHUNK = 1 << 20
_RETRIABLE_STATUS = {408, 429, 500, 502, 503, 504}


@dataclasses.dataclass(frozen=True)
class Expected:
    """What the downloaded file must be (None: not known, not checked).

    Args:
        size: bytes.
        sha256: full hex SHA-256.
        sha256_prefix: the known start of the SHA-256.
        md5: full hex MD5.
    """

    size: int | None = None
    sha256: str | None = None
    sha256_prefix: str | None = None
    md5: str | None = None


def hash_file(path: str | Path) -> tuple[str, str]:
    """``(sha256, md5)`` hex digests of a file, streamed."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 22), b""):
            sha.update(chunk)
            md5.update(chunk)
    return sha.hexdigest(), md5.hexdigest()


class _Retry(Exception):
    """A transient failure: try again (after back-off), resuming."""


def _looks_like_html(first: bytes) -> bool:
    head = first.lstrip()[:64].lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml"))


def report_progress(progress: ProgressReporter | None, done: int, total: int | None, rate: float, message: str = "",
                    state: str = "running") -> None:
    """Send one ``download`` event (MiB done / total, MiB/s) to ``progress`` (nothing when None)."""
    if progress is None:
        return
    mib = 1 << 20
    progress(ProgressEvent(stage="download", step=done // mib, total=(total or 0) // mib,
                           metrics={"MiB/s": rate / mib} if rate else {}, message=message, state=state))


def download_file(
    url: str,
    dest: str | Path,
    *,
    expected: Expected = Expected(),
    part: str | Path | None = None,
    timeout_s: float = 30.0,
    retries: int = 5,
    backoff_s: float = 1.0,
    progress: ProgressReporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    opener: Callable[..., object] | None = None,
    keep_partial: bool = True,
) -> tuple[str, int]:
    """Download ``url`` to ``dest``, resuming ``part``; verify before the final rename.

    Args:
        url: http(s) URL of the file.
        dest: the final file (other processes downloading it through this function wait their turn).
        expected: size and hashes the file must have.
        part: where partial bytes are kept (default: ``.<name>.part`` beside ``dest``).
        timeout_s: seconds without any data before an attempt gives up.
        retries: further attempts after a transient failure.
        backoff_s: first wait between attempts (doubled each time, at most 60 s).
        progress: receives ``download`` events (MiB done / total).
        should_stop: polled between chunks; when it returns True a :class:`CancelledError` is raised
            and the ``.part`` file is kept for resuming.
        opener: ``urllib.request.urlopen`` replacement (tests).
        keep_partial: keep the ``.part`` file when the download fails, for the next call to resume
            (False: delete it; a cancelled download is always kept).

    Returns:
        ``(sha256, size)`` of the file now at ``dest``.

    Raises:
        DownloadError: not found, too many failures, a page instead of the file, disk full.
        CheckpointError: the file arrived but its size or hash is wrong (it was deleted).
        CancelledError: ``should_stop`` said so.
    """
    dest = Path(dest)
    part = Path(part) if part is not None else dest.with_name(f".{dest.name}.part")
    dest.parent.mkdir(parents=True, exist_ok=True)
    with part_lock(part, should_stop=should_stop) as waited:  # one process writes the .part at a time
        if waited:
            done = _already_there(dest, expected)
            if done is not None:
                logger.info("%s: another process has just downloaded it", dest.name)
                return done
        return _download(url, dest, part, expected, timeout_s, retries, backoff_s, progress, should_stop,
                         opener or urllib.request.urlopen, keep_partial)


def _already_there(dest: Path, expected: Expected) -> tuple[str, int] | None:
    """``(sha256, size)`` of ``dest`` when it exists and matches a known hash of ``expected``."""
    if not dest.is_file() or not (expected.sha256 or expected.sha256_prefix or expected.md5):
        return None
    size = dest.stat().st_size
    sha, md5 = hash_file(dest)
    if ((expected.size is None or size == expected.size) and (not expected.sha256 or sha == expected.sha256)
            and (not expected.sha256_prefix or sha.startswith(expected.sha256_prefix))
            and (not expected.md5 or md5 == expected.md5)):
        return sha, size
    return None


def _download(url: str, dest: Path, part: Path, expected: Expected, timeout_s: float, retries: int,
              backoff_s: float, progress: ProgressReporter | None, should_stop: Callable[[], bool] | None,
              opener: Callable[..., object], keep_partial: bool) -> tuple[str, int]:
    attempt = 0
    try:
        while True:
            try:
                _attempt(url, part, expected, timeout_s, progress, should_stop, opener)
                break
            except _Retry as exc:
                attempt += 1
                if attempt > retries:
                    kept = part.stat().st_size if part.exists() else 0
                    raise DownloadError(
                        f"{url}: gave up after {attempt} attempts ({exc}); "
                        + (f"{kept} bytes are kept in {part}: run the same command again to resume, or use --mirror"
                           if keep_partial else "nothing was kept: run the same command again, or use --mirror")
                    ) from None
                wait = min(60.0, backoff_s * 2 ** (attempt - 1))
                logger.warning("%s: %s; retrying in %.1f s (attempt %d of %d)", url, exc, wait, attempt + 1,
                               retries + 1)
                time.sleep(wait)
    except DownloadError:
        if not keep_partial:
            part.unlink(missing_ok=True)
        raise
    return _verify_and_rename(part, dest, expected, url)


def _attempt(url: str, part: Path, expected: Expected, timeout_s: float, progress: ProgressReporter | None,
             should_stop: Callable[[], bool] | None, opener: Callable[..., object]) -> None:
    offset = part.stat().st_size if part.exists() else 0
    if expected.size is not None and offset > expected.size:
        logger.warning("%s is larger than the expected %d bytes; starting again", part, expected.size)
        part.unlink()
        offset = 0
    if expected.size is not None and offset == expected.size:
        return  # complete from an earlier attempt: verify
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = opener(request, timeout=timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            total = _total_from_content_range(exc.headers.get("Content-Range"))
            if total == offset:
                return  # the .part already holds everything
            part.unlink()
            raise _Retry(f"the server refused to resume at byte {offset} (HTTP 416); starting again") from None
        if exc.code in (401, 403):
            raise DownloadError(f"{url}: access denied (HTTP {exc.code}); a proxy or the server needs credentials, "
                                "or use --mirror with a server you can reach") from None
        if exc.code == 404:
            raise DownloadError(f"{url}: not found (HTTP 404); check the URL, or that the mirror (--mirror / "
                                "TSKD_FOUNDATION_MIRROR) holds this file under the same name") from None
        if exc.code in _RETRIABLE_STATUS:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise DownloadError(f"{url}: the server answered HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason
        if isinstance(reason, (socket.timeout, TimeoutError)):
            raise _Retry(f"no answer within {timeout_s:g} s") from None
        raise _Retry(f"cannot connect ({reason})") from None
    except (socket.timeout, TimeoutError):
        raise _Retry(f"no answer within {timeout_s:g} s") from None
    except (ConnectionError, OSError) as exc:
        raise _Retry(f"connection failed ({exc})") from None

    with response:  # type: ignore[attr-defined]
        status = getattr(response, "status", 200)
        content_type = (response.headers.get("Content-Type") or "").lower()  # type: ignore[attr-defined]
        if "text/html" in content_type:
            raise DownloadError(
                f"{url}: the server sent an HTML page (Content-Type {content_type}) instead of the weights; a proxy "
                "may want a login, or the address is a web page, not the file. Open it in a browser, or use --mirror"
            )
        if status == 206:
            start = _start_from_content_range(response.headers.get("Content-Range"))  # type: ignore[attr-defined]
            if start != offset:
                part.unlink(missing_ok=True)
                raise _Retry(f"the server resumed at byte {start} instead of {offset}; starting again")
            mode = "ab"
        else:
            if offset:
                logger.info("%s: the server does not resume (HTTP %s to a Range request); starting again", url, status)
            offset, mode = 0, "wb"
            length = response.headers.get("Content-Length")  # type: ignore[attr-defined]
            if length is not None and expected.size is not None and int(length) != expected.size:
                raise DownloadError(
                    f"{url}: the server offers {int(length)} bytes but the file must have {expected.size}; it is "
                    "another file (an error page, or another version). Check the URL or the mirror"
                )
        total = expected.size
        if total is None:
            length = response.headers.get("Content-Length")  # type: ignore[attr-defined]
            total = offset + int(length) if length is not None else None
        done, started, first = offset, time.monotonic(), True
        try:
            with open(part, mode) as out:
                while True:
                    if should_stop is not None and should_stop():
                        raise CancelledError(f"download of {url} cancelled; {done} bytes kept in {part} for resuming")
                    try:
                        chunk = response.read(_CHUNK)  # type: ignore[attr-defined]
                    except (socket.timeout, TimeoutError):
                        raise _Retry(f"no data for {timeout_s:g} s after {done} bytes") from None
                    except (ConnectionError, OSError) as exc:
                        raise _Retry(f"connection lost after {done} bytes ({exc})") from None
                    if not chunk:
                        break
                    if first and offset == 0 and _looks_like_html(chunk):
                        raise DownloadError(
                            f"{url}: the server sent an HTML page instead of the weights (a proxy's login or error "
                            "page?). Open the address in a browser, or use --mirror"
                        )
                    first = False
                    out.write(chunk)
                    done += len(chunk)
                    elapsed = time.monotonic() - started
                    report_progress(progress, done, total, (done - offset) / elapsed if elapsed > 0 else 0.0)
                out.flush()
                os.fsync(out.fileno())
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                need = f"{(total - done) / 2**20:.0f} MiB more" if total else "more space"
                raise DownloadError(
                    f"disk full while writing {part} ({done} bytes so far, {need} needed); free space there or "
                    f"set TSKD_HOME to a folder on a larger disk, then run the same command again to resume"
                ) from None
            raise
        if total is not None and done < total:
            raise _Retry(f"the connection closed after {done} of {total} bytes")


def _start_from_content_range(value: str | None) -> int | None:
    try:
        return int(value.split()[1].split("-")[0]) if value else None
    except (IndexError, ValueError):
        return None


def _total_from_content_range(value: str | None) -> int | None:
    try:
        return int(value.rsplit("/", 1)[1]) if value else None
    except (IndexError, ValueError):
        return None


def _verify_and_rename(part: Path, dest: Path, expected: Expected, url: str) -> tuple[str, int]:
    size = part.stat().st_size
    problems = []
    if expected.size is not None and size != expected.size:
        problems.append(f"{size} bytes instead of {expected.size}")
    sha, md5 = hash_file(part)
    if expected.sha256 and sha != expected.sha256:
        problems.append(f"SHA-256 {sha} instead of {expected.sha256}")
    if expected.sha256_prefix and not sha.startswith(expected.sha256_prefix):
        problems.append(f"SHA-256 {sha} does not start with {expected.sha256_prefix}")
    if expected.md5 and md5 != expected.md5:
        problems.append(f"MD5 {md5} instead of {expected.md5}")
    if problems:
        part.unlink()
        raise CheckpointError(
            f"{url}: the downloaded file is not the expected one ({'; '.join(problems)}); it was deleted. "
            "If you use a mirror, check that it holds the original file; otherwise try again later"
        )
    os.replace(part, dest)
    logger.info("downloaded %s to %s (%d bytes, sha256 %s)", url, dest, size, sha)
    return sha, size
