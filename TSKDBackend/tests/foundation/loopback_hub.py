"""A loopback server that answers like the Hugging Face hub, for ``huggingface_hub`` itself:
``HEAD``/``GET <repo>/resolve/<revision>/<file>`` with the hub's headers (``X-Repo-Commit``,
``ETag``; for weight files a 302 to a content server with ``X-Linked-Etag`` / ``X-Linked-Size``),
and the content server's ``GET`` with ``Range``. Only 127.0.0.1 is involved.

What the hub sends was read from huggingface_hub 2.4.0 (``file_download.get_hf_file_metadata``:
the commit from ``X-Repo-Commit``, the etag from ``X-Linked-Etag`` else ``ETag``, the size from
``X-Linked-Size`` else ``Content-Length``, the location from a redirect's ``Location``).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

__all__ = ["Hub", "serve_hub"]

LFS_SUFFIXES = (".safetensors", ".bin", ".pth")


@dataclass
class Hub:
    url: str
    cdn_url: str  # the content server: another origin, as the hub's is (huggingface_hub follows same-origin redirects)
    repo: str
    revision: str
    files: dict[str, bytes]
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)
    cut_first: set[str] = field(default_factory=set)  # files whose first content GET stops half-way
    missing_revision: bool = False  # the revision is unknown: 404 with the hub's error header
    slow: float = 0.0  # seconds between the content server's 16 KiB pieces

    def sha(self, name: str) -> str:
        return hashlib.sha256(self.files[name]).hexdigest()


@contextlib.contextmanager
def serve_hub(repo: str, revision: str, files: dict[str, bytes]) -> Iterator[Hub]:
    hub = Hub(url="", cdn_url="", repo=repo, revision=revision, files=dict(files))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_HEAD(self):  # noqa: N802
            self._answer(head=True)

        def do_GET(self):  # noqa: N802
            self._answer(head=False)

        def _send(self, status: int, headers: dict[str, str], body: bytes = b"", head: bool = False) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", headers.get("Content-Length", str(len(body))))
            self.end_headers()
            if not head and body:
                self.wfile.write(body)

        def _answer(self, head: bool) -> None:
            path = urllib.parse.unquote(urllib.parse.urlparse(self.path).path)
            hub.requests.append((self.command, path, self.headers.get("Range")))
            prefix = f"/{hub.repo}/resolve/"
            if path.startswith(prefix):
                revision, _, name = path[len(prefix):].partition("/")
                if revision != hub.revision or hub.missing_revision or name not in hub.files:
                    self._send(404, {"X-Error-Code": "EntryNotFound" if revision == hub.revision else "RevisionNotFound",
                                     "X-Error-Message": "Entry not found", "Content-Type": "application/json"},
                               b'{"error":"Entry not found"}', head)
                    return
                data = hub.files[name]
                common = {"X-Repo-Commit": hub.revision, "Accept-Ranges": "bytes"}
                if name.endswith(LFS_SUFFIXES):  # stored with LFS: the hub redirects to its content server
                    location = f"{hub.cdn_url}/cdn/{hub.sha(name)}?name={urllib.parse.quote(name)}"
                    self._send(302, {**common, "Location": location, "X-Linked-Etag": f'"{hub.sha(name)}"',
                                     "X-Linked-Size": str(len(data)), "ETag": f'"{hashlib.sha1(data).hexdigest()}"'},
                               b"", head)
                    return
                self._serve(data, {**common, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'}, head)
                return
            if path.startswith("/cdn/"):
                name = urllib.parse.parse_qs(urllib.parse.urlparse(self.path).query).get("name", [""])[0]
                if name not in hub.files:
                    self._send(404, {"Content-Type": "text/plain"}, b"no such object", head)
                    return
                self._serve(hub.files[name], {"ETag": f'"{hub.sha(name)}"'}, head, cut=name in hub.cut_first)
                hub.cut_first.discard(name)
                return
            self._send(404, {"Content-Type": "text/plain"}, b"not found", head)

        def _serve(self, data: bytes, headers: dict[str, str], head: bool, cut: bool = False) -> None:
            start = 0
            ranged = self.headers.get("Range")
            status = 200
            if ranged:
                start = int(ranged.split("=")[1].split("-")[0])
                if start >= len(data):
                    self._send(416, {"Content-Range": f"bytes */{len(data)}"}, b"", head)
                    return
                status = 206
                headers = {**headers, "Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            body = data[start:]
            self.send_response(status)
            for key, value in {**headers, "Content-Type": "application/octet-stream",
                               "Content-Length": str(len(body))}.items():
                self.send_header(key, value)
            self.end_headers()
            if head:
                return
            if cut:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            if hub.slow:
                try:
                    for offset in range(0, len(body), 16 << 10):
                        self.wfile.write(body[offset: offset + (16 << 10)])
                        self.wfile.flush()
                        time.sleep(hub.slow)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                return
            self.wfile.write(body)

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]  # the hub, its content server
    for httpd in servers:
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    hub.url, hub.cdn_url = (f"http://127.0.0.1:{httpd.server_address[1]}" for httpd in servers)
    try:
        yield hub
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()
