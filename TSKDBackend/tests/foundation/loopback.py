"""Loopback helpers of the foundation-weights tests, shared with the service and Slicer tests:
tiny SAM files, a Range-honouring HTTP file server on 127.0.0.1, a test catalog, and a guard that
lets ``urlopen`` reach the loopback interface only. No test reaches the internet.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

from safetensors.torch import save_file
from tests.teacher.conftest import make_tiny_source
from tests.teacher.teacher_sam_reference import write_official_checkpoint

from tskd.foundation import catalog as catalog_module
from tskd.foundation import fetch as fetch_module
from tskd.foundation import importing as importing_module
from tskd.foundation import resolve as resolve_module
from tskd.foundation.catalog import parse_catalog

__all__ = ["TinyFiles", "make_tiny_files", "FileServer", "serve_files", "catalog_data", "patch_catalog",
           "guard_urlopen", "wait_until"]


@dataclass
class TinyFiles:
    official_pth: Path
    hf_folder: Path
    hf_safetensors: Path
    sha256: str  # of official_pth
    size: int


def make_tiny_files(root: Path) -> TinyFiles:
    """A tiny official-layout SAM ``.pth``, its Hugging Face folder and single-file ``.safetensors``."""
    source = make_tiny_source()
    hf_state = {k: v.detach().clone() for k, v in source.state_dict().items()}
    pth = root / "sam_tiny_0123ab.pth"
    write_official_checkpoint(source, pth)
    source.save_pretrained(root / "sam-tiny-hf")
    single = root / "sam_tiny_hf.safetensors"
    save_file({k: v for k, v in hf_state.items() if k != "prompt_encoder.shared_embedding.positional_embedding"},
              str(single))
    data = pth.read_bytes()
    return TinyFiles(pth, root / "sam-tiny-hf", single, hashlib.sha256(data).hexdigest(), len(data))


def guard_urlopen(monkeypatch: Any) -> None:
    """Make ``urllib.request.urlopen`` refuse every host but 127.0.0.1."""
    real = urllib.request.urlopen

    def loopback_only(request, *args, **kwargs):
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        host = urllib.parse.urlparse(url).hostname
        assert host == "127.0.0.1", f"a test tried to reach {url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", loopback_only)


@dataclass
class FileServer:
    url: str
    files: dict[str, bytes]
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range header)
    cut_first: set[str] = field(default_factory=set)  # paths whose first GET stops half-way
    stall: set[str] = field(default_factory=set)  # paths that send headers and a little, then nothing
    html: set[str] = field(default_factory=set)  # paths answered with a proxy's HTML page
    no_range: bool = False
    slow: dict[str, float] = field(default_factory=dict)  # path -> seconds between 64 KiB writes
    types: dict[str, str] = field(default_factory=dict)  # path -> Content-Type (default application/octet-stream)


@contextlib.contextmanager
def serve_files() -> Iterator[FileServer]:
    """A threaded HTTP server on 127.0.0.1 serving ``state.files`` (path -> bytes) with Range support."""
    state = FileServer(url="", files={})
    stop = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest's output clean
            pass

        def do_GET(self):  # noqa: N802 - http.server's name
            path = urllib.parse.urlparse(self.path).path
            state.requests.append((path, self.headers.get("Range")))
            if path in state.html:
                body = b"<!DOCTYPE html><html><body>Please log in to the proxy</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if path not in state.files:
                self.send_error(404, "Not Found")
                return
            data = state.files[path]
            start = 0
            ranged = self.headers.get("Range")
            if ranged and not state.no_range:
                start = int(ranged.split("=")[1].split("-")[0])
                if start >= len(data):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", state.types.get(path, "application/octet-stream"))
            self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            body = data[start:]
            if path in state.stall:
                self.wfile.write(body[:100])
                self.wfile.flush()
                stop.wait(30)
                return
            if path in state.cut_first:
                state.cut_first.discard(path)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if path in state.slow:
                try:
                    for offset in range(0, len(body), 1 << 16):
                        if stop.is_set():
                            return
                        self.wfile.write(body[offset: offset + (1 << 16)])
                        self.wfile.flush()
                        time.sleep(state.slow[path])
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield state
    finally:
        stop.set()
        httpd.shutdown()
        httpd.server_close()


def catalog_data(tiny: TinyFiles, extra: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The package catalog plus ``sam-tiny`` (the tiny file 'published' at Meta's address), ``sam-tiny-hf``
    and ``extra`` entries."""
    import yaml
    from importlib import resources

    text = (resources.files("tskd.foundation") / "catalog.yaml").read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    data["models"].append({
        "name": "sam-tiny", "title": "tiny test SAM", "architecture": "tiny", "licence": "Apache-2.0",
        "sources": [{"kind": "url", "url": "https://dl.fbaipublicfiles.com/segment_anything/sam_tiny_0123ab.pth",
                     "file": "sam_tiny_0123ab.pth", "size": tiny.size, "sha256": tiny.sha256}],
    })
    data["models"].append({
        "name": "sam-tiny-hf", "title": "tiny test SAM on a Hugging Face endpoint", "architecture": "tiny",
        "sources": [{"kind": "huggingface", "repo": "test/sam-tiny", "revision": "0" * 40,
                     "files": ["config.json", "model.safetensors"]}],
    })
    data["models"].extend(extra or [])
    return data


def patch_catalog(monkeypatch: Any, data: dict[str, Any]) -> tuple:
    """Make every ``tskd.foundation`` module (and the service) see the catalog ``data``."""
    entries = parse_catalog(data, "test catalog")
    for module in (catalog_module, fetch_module, importing_module, resolve_module):
        if hasattr(module, "load_catalog"):
            monkeypatch.setattr(module, "load_catalog", lambda: entries)
    return entries


def wait_until(predicate, timeout_s=5.0):
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False
