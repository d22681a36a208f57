"""The Slicer module's client on its own: Python 3.9 and standard library only, plain-words
connection errors, timeouts, no redirects, streamed multipart bodies, TLS verification."""

from __future__ import annotations

import ast
import json
import http.server
import shutil
import socket
import subprocess
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest
from SlicerTSKDLib.backend import client as client_module
from SlicerTSKDLib.backend.client import TSKDClient, TSKDClientError, TSKDConnectionError, _MultipartBody

CLIENT_FILE = Path(client_module.__file__)


def test_python39_syntax_and_standard_library_only():
    tree = ast.parse(CLIENT_FILE.read_text(encoding="utf-8"), feature_version=(3, 9))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add((node.module or "").split(".")[0])
        assert not isinstance(node, ast.Match)
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported - set(sys.stdlib_module_names)


def test_base_url_forms():
    assert TSKDClient("http://127.0.0.1:8000").api_url == "http://127.0.0.1:8000/api/v1"
    assert TSKDClient("http://127.0.0.1:8000/").api_url == "http://127.0.0.1:8000/api/v1"
    assert TSKDClient("https://host.example/tskd/api/v1/").api_url == "https://host.example/tskd/api/v1"
    with pytest.raises(ValueError, match="http://HOST:PORT"):
        TSKDClient("127.0.0.1:8000")


@contextmanager
def serving(handler: type) -> Iterator[str]:
    """``handler`` on a loopback HTTP server in a thread; yields its base URL, shuts it down after."""
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_nothing_listening_is_a_connection_error():
    port = free_port()
    client = TSKDClient(f"http://127.0.0.1:{port}", timeout=5)
    with pytest.raises(TSKDConnectionError) as err:
        client.health()
    assert err.value.status is None
    assert str(err.value).startswith(f"cannot reach the backend at http://127.0.0.1:{port}: ")
    assert "refused" in str(err.value).lower()
    assert isinstance(err.value, TSKDClientError)  # one except clause catches both


def test_silent_server_times_out():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        client = TSKDClient(f"http://127.0.0.1:{listener.getsockname()[1]}", timeout=0.5)
        with pytest.raises(TSKDConnectionError, match="no answer within 0.5 s|timed out"):
            client.health()
    finally:
        listener.close()


class _CutOff(http.server.BaseHTTPRequestHandler):
    """Announces 1000 bytes of JSON, sends 10, and hangs up (a server killed mid-answer)."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b'{"status":')
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, *args) -> None:
        pass


def test_an_answer_cut_off_is_a_connection_error_not_a_crash():
    """http.client's IncompleteRead is not an OSError; it killed a polling thread in the soak test."""
    with serving(_CutOff) as url:
        with pytest.raises(TSKDConnectionError, match="answer was cut off"):
            TSKDClient(url, timeout=5).health()


class _Redirecting(http.server.BaseHTTPRequestHandler):
    seen_auth: list = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        _Redirecting.seen_auth.append(self.headers.get("Authorization"))
        self.send_response(302)
        self.send_header("Location", f"http://127.0.0.1:{self.server.server_address[1]}/elsewhere")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_redirects_are_not_followed():
    with serving(_Redirecting) as url:
        client = TSKDClient(url, token="secret", timeout=5)
        with pytest.raises(TSKDClientError) as err:
            client.info()
        assert err.value.status == 302
        assert _Redirecting.seen_auth == ["Bearer secret"]  # sent once, to the server asked, not re-sent


def test_multipart_body_is_streamed_in_chunks(tmp_path):
    big = tmp_path / "big.nii.gz"
    big.write_bytes(bytes(range(256)) * (3 * 4096 + 7))  # 3 MiB and a bit
    body = _MultipartBody([("name", "case_1")], [("image", str(big))])
    chunks = list(body)
    assert max(len(chunk) for chunk in chunks) <= 1 << 20
    data = b"".join(chunks)
    assert len(data) == len(body)
    assert data.count(big.read_bytes()) == 1
    assert b'name="image"; filename="big.nii.gz"' in data and data.endswith(f"--{body.boundary}--\r\n".encode())


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a certificate")
def test_tls_is_verified(server_process, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    proc = server_process("--ssl-certfile", str(cert), "--ssl-keyfile", str(key))
    assert proc.url.startswith("https://127.0.0.1:")
    with pytest.raises(TSKDConnectionError, match="TLS check failed"):
        TSKDClient(proc.url, timeout=10).health()
    assert TSKDClient(proc.url, timeout=10, ca_file=str(cert)).health()["status"] == "ok"


class _Suggesting(http.server.BaseHTTPRequestHandler):
    """Answers the suggestions route: 202 computing first, then 200 done; records each request's path."""

    seen: list = []

    def do_GET(self):  # noqa: N802 - the handler's name
        _Suggesting.seen.append(self.path)
        done = len(_Suggesting.seen) > 1
        body = json.dumps({"status": "done" if done else "computing", "result": {"suggestions": []} if done else None})
        self.send_response(200 if done else 202)
        if not done:
            self.send_header("Retry-After", "2")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode("utf-8"))

    def log_message(self, *args):
        pass


def test_suggestions_surface_the_computing_state_and_send_the_options():
    _Suggesting.seen = []
    with serving(_Suggesting) as url:
        client = TSKDClient(url, timeout=5)
        first = client.suggestions("p1", model_id="m 1", top=5, teacher=False, retry=True)
        assert first == {"status": "computing", "result": None}  # a 202 is an answer, not an error
        second = client.suggestions("p1")
        assert second["status"] == "done" and second["result"] == {"suggestions": []}
        assert _Suggesting.seen == ["/api/v1/projects/p1/suggestions?model_id=m+1&top=5&teacher=false&retry=true",
                                    "/api/v1/projects/p1/suggestions"]


class _Jobs(http.server.BaseHTTPRequestHandler):
    """Answers ``POST .../jobs`` with a job; records each request's JSON body."""

    bodies: list = []

    def do_POST(self):  # noqa: N802 - the handler's name
        _Jobs.bodies.append(json.loads(self.rfile.read(int(self.headers["Content-Length"])).decode("utf-8")))
        body = json.dumps({"id": "j2", "state": "queued"})
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode("utf-8"))

    def log_message(self, *args):
        pass


def test_start_job_sends_update_from_only_when_given():
    _Jobs.bodies = []
    with serving(_Jobs) as url:
        client = TSKDClient(url, timeout=5)
        assert client.start_job("p1", preset="tiny")["id"] == "j2"
        client.start_job("p1", base="none", update_from="m1")
        assert _Jobs.bodies == [{"settings": {}, "preset": "tiny"},
                                {"settings": {}, "base": "none", "update_from": "m1"}]
