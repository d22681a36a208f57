"""Connecting to a backend: the plain-words messages for each way it can fail (against real sockets and
HTTP servers), version checks, and the local backend started and stopped through the process runner."""

from __future__ import annotations

import http.server
import json
import socket
import sys
import threading
import time

import pytest

from conftest import backendEnvironment
from SlicerTSKDLib.backend.backendLogic import (
    FAILED,
    STARTING,
    STOPPED,
    BackendProblem,
    LocalBackend,
    checkBackend,
    defaultWorkspace,
    describeConnectionError,
    freeLocalPort,
    localServeCommand,
    newToken,
    parseVersion,
)
from SlicerTSKDLib.backend.client import TSKDClient, TSKDClientError
from SlicerTSKDLib.processRunner import SubprocessRunner


class FakeBackendHandler(http.server.BaseHTTPRequestHandler):
    """Answers /health with ``server.version``; /info needs the token ``secret``."""

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path == "/api/v1/health":
            body = {"status": "ok", "version": self.server.version}
        elif self.path == "/api/v1/info" and self.headers.get("Authorization") == "Bearer secret":
            body = {"version": self.server.version, "device": {"type": "cuda", "gpus": [{"name": "H100"}]},
                    "presets": ["tiny", "cpu-small"], "checkpoints": [{"name": "medsam.pth"}], "limits": {"max_upload_mb": 10}}
        elif self.path == "/api/v1/info":
            self.send_response(401)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"detail": "unauthorized"}')
            return
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def fakeBackend():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeBackendHandler)
    server.version = "0.1.0"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def urlOf(server) -> str:
    return "http://127.0.0.1:{}".format(server.server_address[1])


def test_parse_version():
    assert parseVersion("0.10.2") == (0, 10, 2)
    assert parseVersion("1.2rc1") == (1, 2)
    assert parseVersion("2") == (2,) and parseVersion("dev") == ()
    assert parseVersion("0.9") < parseVersion("0.10.0")


def test_a_backend_that_answers_is_described(fakeBackend):
    info = checkBackend(TSKDClient(urlOf(fakeBackend), token="secret"))
    assert info.version == "0.1.0" and info.device == "cuda" and info.gpus == ["H100"]
    assert info.presets == ["tiny", "cpu-small"] and info.checkpoints == ["medsam.pth"] and info.maxUploadMb == 10
    assert info.summary() == "Connected to tskd 0.1.0 at {} (GPU: H100).".format(urlOf(fakeBackend))


def test_wrong_token(fakeBackend):
    with pytest.raises(BackendProblem, match="refused the token: enter the token given by the person who runs that server"):
        checkBackend(TSKDClient(urlOf(fakeBackend), token="wrong"))


def test_backend_too_old(fakeBackend):
    fakeBackend.version = "0.0.9"
    with pytest.raises(BackendProblem, match=r"runs tskd 0.0.9, which is too old for this module \(it needs 0.1.0"):
        checkBackend(TSKDClient(urlOf(fakeBackend), token="secret"))


def test_connection_refused():
    url = "http://127.0.0.1:{}".format(freeLocalPort())
    with pytest.raises(BackendProblem) as caught:
        checkBackend(TSKDClient(url))
    assert str(caught.value) == ("Nothing answers at {}: the backend is not running there, or the port is wrong. "
                                 "Start the backend, or check the address.".format(url))


def test_tls_to_a_plain_http_server(fakeBackend):
    url = "https://127.0.0.1:{}".format(fakeBackend.server_address[1])
    with pytest.raises(BackendProblem, match=r"^The secure connection to https://127.0.0.1:\d+ failed"):
        checkBackend(TSKDClient(url, timeout=5))


def test_timeout_of_a_server_that_never_answers():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    url = "http://127.0.0.1:{}".format(listener.getsockname()[1])
    try:
        with pytest.raises(BackendProblem, match="did not answer in time: it may be overloaded, or a firewall blocks"):
            checkBackend(TSKDClient(url, timeout=0.5))
    finally:
        listener.close()


def test_not_a_backend(fakeBackend):
    with pytest.raises(BackendProblem, match="not a SlicerTSKD backend"):
        checkBackend(TSKDClient(urlOf(fakeBackend) + "/elsewhere"))


def test_other_errors_keep_the_servers_words():
    text = describeConnectionError(TSKDClientError(422, "case_001: the label map has values 0..9"), "http://h:1")
    assert text == "The backend at http://h:1 answered with an error (422): case_001: the label map has values 0..9"


def test_command_token_port_and_workspace(tmp_path):
    command = localServeCommand(["/env/bin/python", "-m", "tskd"], "/w", 8123)
    assert command == ["/env/bin/python", "-m", "tskd", "serve", "--workspace", "/w", "--host", "127.0.0.1", "--port", "8123",
                       "--max-upload-mb", "65536", "--max-image-mb", "65536",  # issue 32, item 12: a high local limit
                       "--exit-with-parent"]  # item 8: the server exits when Slicer does
    assert not any("token" in part for part in command)  # the token goes in the environment
    with pytest.raises(ValueError):
        localServeCommand([], "/w", 1)
    assert len(newToken()) >= 40 and newToken() != newToken()
    assert defaultWorkspace(str(tmp_path / "SlicerTSKD" / "backend")) == str(tmp_path / "SlicerTSKD" / "workspace")
    port = freeLocalPort()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))  # it was free


def test_local_backend_runs_with_its_token_and_stops(localBackend):
    client = localBackend.client()
    assert checkBackend(client).version
    assert localBackend.url.startswith("http://127.0.0.1:") and localBackend.token
    with pytest.raises(TSKDClientError) as caught:
        TSKDClient(localBackend.url, token="not-it").list_projects()
    assert caught.value.status == 401
    events = []
    localBackend.stateChanged.connect(lambda state, message: events.append(state))
    localBackend.stop()
    runner = localBackend.runner
    assert runner.waitUntil(lambda: localBackend.state == STOPPED, 30), localBackend.state
    assert events[-1] == STOPPED and "stopping" in events
    with pytest.raises(TSKDClientError):
        TSKDClient(localBackend.url, timeout=2).health()


def test_local_backend_that_exits_reports_why(tmp_path):
    runner = SubprocessRunner()
    backend = LocalBackend(runner)
    code = "import sys; print('tskd: error: the workspace is in use'); sys.exit(2)"
    backend.start([sys.executable, "-c", code], str(tmp_path / "ws"), backendEnvironment())
    assert backend.state == STARTING
    assert runner.waitUntil(lambda: backend.state == FAILED, 30)
    events = []
    backend.stateChanged.connect(lambda state, message: events.append(message))
    backend.stop()  # nothing to stop
    assert events == ["The local backend is stopped."]


def test_local_backend_that_never_answers_times_out(tmp_path):
    now = [0.0]
    runner = SubprocessRunner()
    backend = LocalBackend(runner, probe=lambda url, token: False, startTimeout=10.0, clock=lambda: now[0])
    messages = []
    backend.stateChanged.connect(lambda state, message: messages.append((state, message)))
    backend.start([sys.executable, "-c", "import time; print('loading'); time.sleep(60)"], str(tmp_path / "ws"),
                  backendEnvironment())
    runner.waitUntil(lambda: "loading" in backend._outputTail, 20)
    backend.poll()
    assert backend.state == STARTING
    now[0] = 11.0
    backend.poll()
    assert messages[-1][0] == FAILED
    assert messages[-1][1].startswith("The local backend did not answer within 10 s.") and "loading" in messages[-1][1]
    assert runner.waitUntil(lambda: not runner.isRunning(), 20)
    start = time.monotonic()
    backend.poll()
    assert time.monotonic() - start < 1


def test_start_up_probe_runs_in_a_worker_and_poll_never_waits(tmp_path):
    """Issue 14, item 6: with ``submit`` (the session's), poll() returns at once while /health is asked."""
    from SlicerTSKDLib.backend.backendLogic import RUNNING, STARTING, LocalBackend
    from SlicerTSKDLib.backgroundTasks import TaskRunner

    tasks = TaskRunner()
    calls = []

    def slowProbe(url, token):
        calls.append(url)
        time.sleep(0.5)  # a server that takes its time to answer
        return len(calls) >= 2

    runner = SubprocessRunner()
    backend = LocalBackend(runner, probe=slowProbe, submit=tasks.submit)
    backend.start([sys.executable, "-c", "import time; time.sleep(30)"], str(tmp_path / "ws"), {})
    try:
        began = time.monotonic()
        for _ in range(5):
            backend.poll()
        assert time.monotonic() - began < 0.2 and backend.state == STARTING
        assert tasks.waitAll(5) and len(calls) == 1 and backend.state == STARTING  # one probe at a time
        backend.poll()
        assert tasks.waitAll(5) and backend.state == RUNNING and len(calls) == 2
    finally:
        runner.kill()
        runner.waitUntil(lambda: not runner.isRunning(), 10)
        tasks.shutdown()


def test_backend_refusals_never_name_server_options_or_request_fields():
    """Issue 32, item 12: messages shown to clinicians never name API parameters or server flags."""
    from SlicerTSKDLib.backend.backendLogic import plainBackendMessage
    from SlicerTSKDLib.backend.client import TSKDClientError
    from SlicerTSKDLib.session import userMessage

    big = TSKDClientError(413, "'image' file 'ct.nrrd' is larger than the server's limit of 512 MB; the server's "
                               "--max-upload-mb option sets it")
    text = userMessage(big)
    assert text.startswith("The image is larger than the backend accepts (512 MB).") and "--" not in text
    assert plainBackendMessage(409, "the project has a case named 'case_000' already; send replace=true to replace "
                                    "it") == "the project has a case named 'case_000' already"
    assert plainBackendMessage(409, "the project has no trained model yet; start a job (POST /projects/{id}/jobs) "
                                    "and wait for it") == "the project has no trained model yet"
    assert plainBackendMessage(422, "case_001: the label map has values 0..9; the project has labels 0..2") == \
        "case_001: the label map has values 0..9; the project has labels 0..2"  # nothing to drop
    assert "--token" not in userMessage(TSKDClientError(401, "invalid token"), "http://h:1")
