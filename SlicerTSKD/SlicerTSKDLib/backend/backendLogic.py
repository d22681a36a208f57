"""Connecting to a backend: a local ``tskd serve`` started by the module, or a remote server.

- :class:`LocalBackend` starts ``<backend command> serve --workspace W --port P`` through a
  :class:`~SlicerTSKDLib.processRunner.ProcessRunner` with a fresh token (given to the server in
  its environment as ``TSKD_TOKEN``: a command line is readable by every user of the machine), and
  waits for ``/health``: the widget's ``qt.QTimer`` calls :meth:`LocalBackend.poll`, which probes
  the loopback address with a short timeout, so nothing waits in a loop. :meth:`LocalBackend.stop`
  asks the server to stop (training workers keep running; a restarted server picks them up) and
  kills it when it does not stop within a grace period.
- :func:`checkBackend` (blocking: run it in a worker thread) asks ``/health`` and ``/info`` and
  turns every failure into a :class:`BackendProblem` whose message says in plain words what is
  wrong: refused, wrong token, TLS, timeout, a backend too old for this module.
- :class:`BackendLogic` holds the "Backend server" panel's decisions: the mode, address and
  workspace kept in the settings (never the token), whether the local backend can start and why
  not, the client of a remote address, when a stopped local backend ends the connection, and the
  status line when nothing is connected. The panel (``backendWidget.py``) gets it in its constructor.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

from .serverState import WorkspaceLock, processAlive, readState, removeState, terminateProcess, writeState
from .client import TSKDClient, TSKDClientError, TSKDConnectionError
from ..processRunner import ProcessRunner
from ..signal import Signal

__all__ = [
    "MINIMUM_BACKEND_VERSION",
    "BackendProblem",
    "BackendInfo",
    "parseVersion",
    "describeConnectionError",
    "plainBackendMessage",
    "LOCAL_UPLOAD_LIMIT_MB",
    "checkBackend",
    "freeLocalPort",
    "newToken",
    "defaultWorkspace",
    "localServeCommand",
    "LocalBackend",
    "BackendLogic",
    "BackendSettings",
    "NO_ENVIRONMENT",
    "SET_UP_OR_CONNECT",
    "ENTER_ADDRESS",
    "NOT_ENCRYPTED_DECLINED",
    "STOPPED",
    "STARTING",
    "RUNNING",
    "STOPPING",
    "FAILED",
]

logger = logging.getLogger(__name__)

#: Oldest backend whose API this module speaks (``/api/v1`` with projects, cases, jobs, models).
MINIMUM_BACKEND_VERSION = "0.1.0"

STOPPED = "stopped"
STARTING = "starting"
RUNNING = "running"
STOPPING = "stopping"
FAILED = "failed"


class BackendProblem(Exception):
    """The backend cannot be used; the message says why in plain words and what to do."""


@dataclass
class BackendInfo:
    """A backend that answered.

    Args:
        url: its address (``http://127.0.0.1:8000``).
        version: ``tskd`` version it runs.
        device: ``"cpu"``, ``"cuda"`` or ``"mps"``.
        gpus: names of its GPUs.
        presets: training presets it offers.
        checkpoints: names of its foundation-model checkpoints.
        maxUploadMb: largest file it accepts.
    """

    url: str
    version: str
    device: str = "cpu"
    gpus: List[str] = field(default_factory=list)
    presets: List[str] = field(default_factory=list)
    checkpoints: List[str] = field(default_factory=list)
    maxUploadMb: Optional[float] = None

    def summary(self) -> str:
        """One line for the status label."""
        where = "GPU: " + ", ".join(self.gpus) if self.gpus else ("Apple GPU" if self.device == "mps" else "CPU only")
        return "Connected to tskd {} at {} ({}).".format(self.version, self.url, where)


def parseVersion(text: str) -> Tuple[int, ...]:
    """``"0.10.2rc1"`` -> ``(0, 10, 2)``: the leading numbers of a version, for comparisons."""
    numbers = []
    for part in str(text).strip().split("."):
        match = re.match(r"\d+", part)
        if not match:
            break
        numbers.append(int(match.group(0)))
        if match.end() != len(part):
            break
    return tuple(numbers)


#: Parts of a backend message that speak to programmers: server options (``--max-upload-mb``), request
#: fields (``replace=true``, ``force: true``), routes (``POST /projects/...``), environment variables.
_API_WORDS = re.compile(r"(^|\s|\()--[a-z][a-z-]+|\b[a-z_]+=(true|false)\b|\b[a-z_]+: ?(true|false)\b|"
                        r"\b(GET|POST|PUT|PATCH|DELETE) /|\$[A-Z_]{3,}|\b[a-z]+_[a-z_]+=")
_LIMIT = re.compile(r"limit of ([0-9.]+) ?MB")


def plainBackendMessage(status: Optional[int], message: str) -> str:
    """A backend refusal in words for clinicians (issue 32, item 12): never a server option or request field.

    The backend's messages say what is wrong, then how to fix it in API terms after a ``;``
    ("... already; send replace=true to replace it"): the API parts are dropped (the first part always
    stays). A file over the upload limit (413) gets its own sentence.
    """
    text = str(message or "").strip()
    if status == 413:
        found = _LIMIT.search(text)
        limit = " ({} MB)".format(found.group(1)) if found else ""
        return ("The image is larger than the backend accepts{}. The backend this module starts on this computer "
                "accepts large images; for a shared server, ask the person who runs it to raise its limit."
                .format(limit))
    parts = [part.strip() for part in re.split(r";\s+", text) if part.strip()]
    if not parts:
        return text
    kept = [parts[0]] + [part for part in parts[1:] if not _API_WORDS.search(part)]
    return "; ".join(kept)


def describeConnectionError(exc: BaseException, url: str) -> str:
    """A plain-words sentence for a failed call to the backend at ``url``.

    Args:
        exc: what the client raised (:class:`TSKDConnectionError`, :class:`TSKDClientError`, ...).
        url: the address the user gave.
    """
    if isinstance(exc, TSKDConnectionError):
        text = exc.message.lower()
        if "tls" in text or "certificate" in text or "ssl" in text:
            return ("The secure connection to {} failed: the server's certificate is not trusted or the server does "
                    "not speak HTTPS. Check the address (http:// or https://) and the server's certificate.".format(url))
        if "refused" in text:
            return ("Nothing answers at {}: the backend is not running there, or the port is wrong. Start the backend, "
                    "or check the address.".format(url))
        if "no answer within" in text or "timed out" in text or "timeout" in text:
            return ("The backend at {} did not answer in time: it may be overloaded, or a firewall blocks the "
                    "connection. Try again, or check the address and the network.".format(url))
        if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return "The server name in {} cannot be found: check the address.".format(url)
        if "unreachable" in text:
            return "The network cannot reach {}: check the connection and the address.".format(url)
        return "Cannot reach the backend at {}: {}".format(url, exc.message)
    if isinstance(exc, TSKDClientError):
        if exc.status == 401:
            return ("The backend at {} refused the token: enter the token given by the person who runs that "
                    "server.".format(url))
        if exc.status == 404:
            return ("{} answered, but it is not a SlicerTSKD backend (or one far older than this module): "
                    "check the address.".format(url))
        return "The backend at {} answered with an error ({}): {}".format(url, exc.status, exc.message)
    if isinstance(exc, BackendProblem):
        return str(exc)
    return "Cannot use the backend at {}: {}".format(url, exc)


def checkBackend(client: TSKDClient, minimumVersion: str = MINIMUM_BACKEND_VERSION) -> BackendInfo:
    """Ask the backend who it is (blocking: call it from a worker thread).

    Raises:
        BackendProblem: it cannot be reached, refuses the token, is not a SlicerTSKD backend, or
            is older than ``minimumVersion``; the message is meant for the user.
    """
    url = client.server_url
    try:
        health = client.health()
        if not isinstance(health, dict) or health.get("status") != "ok" or "version" not in health:
            raise BackendProblem("{} answered, but not like a SlicerTSKD backend: check the address.".format(url))
        version = str(health["version"])
        if parseVersion(version) < parseVersion(minimumVersion):
            raise BackendProblem(
                "The backend at {} runs tskd {}, which is too old for this module (it needs {} or newer): update the "
                "backend ('Set up local backend' again, or pip install -U on the server).".format(url, version, minimumVersion)
            )
        info = client.info()
    except BackendProblem:
        raise
    except Exception as exc:
        raise BackendProblem(describeConnectionError(exc, url)) from None
    device = info.get("device") or {}
    return BackendInfo(
        url=url,
        version=str(info.get("version", version)),
        device=str(device.get("type") or "cpu"),
        gpus=[str(gpu.get("name", "GPU")) for gpu in device.get("gpus") or []],
        presets=[str(name) for name in info.get("presets") or []],
        checkpoints=[str(item.get("name")) for item in info.get("checkpoints") or [] if item.get("name")],
        maxUploadMb=(info.get("limits") or {}).get("max_upload_mb"),
    )


def freeLocalPort() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def newToken() -> str:
    """A fresh random token for a local backend (URL-safe, 256 bits)."""
    return secrets.token_urlsafe(32)


def defaultWorkspace(environmentRoot: str) -> str:
    """The local backend's workspace: ``workspace`` next to the environment folder.

    Args:
        environmentRoot: the backend environment folder (``.../SlicerTSKD/backend``).
    """
    return os.path.join(os.path.dirname(os.path.abspath(environmentRoot)), "workspace")


#: Upload limits of the server on this computer, in MiB (issue 32, item 12): the server's own default (512)
#: is meant for a shared server; a local one receives only this user's images (a whole-body CT in float32
#: is over 1 GB), and its limit cannot be changed from the panel.
LOCAL_UPLOAD_LIMIT_MB = 65536


#: How long a server left running by an earlier session gets to answer before a new one is started.
ADOPT_TIMEOUT_S = 10.0

#: The server exits when its stdin (a pipe from Slicer) reaches end-of-file, i.e. when Slicer dies (issue 32, item 8).
EXIT_WITH_PARENT = "--exit-with-parent"
#: Backend commands that refused the flag in this Slicer session (an environment older than it): started without.
_WITHOUT_EXIT_FLAG: set = set()


def localServeCommand(backendCommand: Sequence[str], workspace: str, port: int,
                      exitWithParent: bool = True) -> List[str]:
    """``<backend command> serve --workspace W --host 127.0.0.1 --port P --max-upload-mb N --max-image-mb N
    [--exit-with-parent]`` (the token goes in the environment)."""
    if not backendCommand:
        raise ValueError("backendCommand must not be empty")
    if not 0 < int(port) < 65536:
        raise ValueError("port must be 1..65535, got {}".format(port))
    command = list(backendCommand) + ["serve", "--workspace", workspace, "--host", "127.0.0.1", "--port",
                                      str(int(port)), "--max-upload-mb", str(LOCAL_UPLOAD_LIMIT_MB),
                                      "--max-image-mb", str(LOCAL_UPLOAD_LIMIT_MB)]
    return command + ([EXIT_WITH_PARENT] if exitWithParent else [])


_LISTENING = re.compile(r"tskd serve: listening on (\S+)")


class LocalBackend:
    """A ``tskd serve`` child process on this machine.

    Args:
        runner: runs the server (``QProcessRunner`` in Slicer, ``SubprocessRunner`` in tests).
        probe: ``probe(url, token) -> bool``, True once ``/health`` answers (default: a 1 s client call).
        startTimeout: seconds the server gets to answer ``/health``.
        stopGrace: seconds between the request to stop and killing the server.
        clock: monotonic clock (tests pass a fake).
        submit: runs the probe off the GUI thread, with ``SessionState.submit``'s signature
            (``submit(name, function, *args, onSuccess=..., onError=...)``); without it the probe
            blocks :meth:`poll` (headless use and tests).

    Signals:
        stateChanged(state: str, message: str): :data:`STARTING`, :data:`RUNNING`, :data:`STOPPING`,
            :data:`STOPPED` or :data:`FAILED` with a sentence for the user.
        output(text: str): console output of the server.

    The owner calls :meth:`poll` from a timer (every 250-500 ms) while :meth:`needsPolling` is True.
    """

    def __init__(
        self,
        runner: ProcessRunner,
        probe: Optional[Callable[[str, str], bool]] = None,
        startTimeout: float = 120.0,
        stopGrace: float = 15.0,
        clock: Callable[[], float] = time.monotonic,
        submit: Optional[Callable[..., Any]] = None,
    ) -> None:
        self.runner = runner
        self.submit = submit
        self._probing = False
        self.probe = probe or _probeHealth
        self.adoptProbe = probe or _probeWithToken
        self.startTimeout = float(startTimeout)
        self.stopGrace = float(stopGrace)
        self.clock = clock
        self.stateChanged = Signal("state", "message")
        self.output = Signal("text")
        self.state = STOPPED
        self.url = ""
        self.token = ""
        self.workspace = ""
        self._deadline = 0.0
        self._outputTail = ""
        self._lock: Optional[WorkspaceLock] = None
        self._adopted: Optional[Dict[str, Any]] = None  # a server left running by an earlier session
        self._launch: Optional[Tuple[List[str], Dict[str, str], int]] = None
        self._exitWithParent = True
        runner.outputReady.connect(self._onOutput)
        runner.finished.connect(self._onFinished)

    def start(self, backendCommand: Sequence[str], workspace: str, environment: Mapping[str, str],
              port: Optional[int] = None, token: Optional[str] = None) -> None:
        """Start the server (returns at once; watch ``stateChanged``).

        Args:
            backendCommand: the environment's command for ``tskd`` (``[python, "-m", "tskd"]``).
            workspace: the server's workspace folder (created when missing).
            environment: the child's environment (without Slicer's Python variables).
            port: the port (default: a free one).
            token: the token (default: a fresh one).
        """
        if self.state in (STARTING, RUNNING, STOPPING):
            raise RuntimeError("the local backend is already {}".format(self.state))
        os.makedirs(workspace, exist_ok=True)
        self.workspace = workspace
        self._outputTail = ""
        if self._lock is not None and os.path.dirname(self._lock.path) != workspace:
            self._lock.release()
            self._lock = None
        lock = self._lock or WorkspaceLock(workspace)
        held = lock.acquire()
        self._lock = lock if held else None
        left = readState(workspace)
        if left is not None and not processAlive(left["pid"]):
            removeState(workspace)  # its server is gone (Slicer and server ended, or the machine restarted)
            left = None
        if left is not None:  # a server still running from an earlier Slicer session (or another one): reconnect
            self._adopted = left
            self.url, self.token = "http://127.0.0.1:{}".format(left["port"]), left["token"]
            self._launch = (list(backendCommand), dict(environment), int(port) if port else 0)
            self._deadline = self.clock() + min(self.startTimeout, ADOPT_TIMEOUT_S)
            self._setState(STARTING, "Reconnecting to the local backend left running (process {})...".format(left["pid"]))
            return
        if not held:
            self._setState(FAILED, "Another Slicer is starting a local backend on the workspace {}: wait a moment "
                                   "and press Start again, or choose another workspace.".format(workspace))
            return
        self._launchServer(list(backendCommand), dict(environment), int(port) if port else 0, token)

    def _launchServer(self, backendCommand: List[str], environment: Dict[str, str], port: int,
                      token: Optional[str] = None) -> None:
        self._adopted = None
        self._exitWithParent = tuple(backendCommand) not in _WITHOUT_EXIT_FLAG
        port = port or freeLocalPort()
        self.token = token or newToken()
        self.url = "http://127.0.0.1:{}".format(port)
        self._launch = (backendCommand, environment, port)
        env = dict(environment)
        env["TSKD_TOKEN"] = self.token
        self._deadline = self.clock() + self.startTimeout
        self._setState(STARTING, "Starting the local backend at {}...".format(self.url))
        # stdin: a pipe the OS closes when Slicer dies; --exit-with-parent makes the server exit then
        self.runner.start(localServeCommand(backendCommand, self.workspace, port, self._exitWithParent), env,
                          cwd=self.workspace, stdinPipe=True)

    def needsPolling(self) -> bool:
        return self.state in (STARTING, STOPPING)

    @property
    def adopted(self) -> bool:
        """The server was left running by an earlier Slicer session and reconnected to (not our child)."""
        return self._adopted is not None

    def canStop(self) -> bool:
        return self.runner.isRunning() or (self._adopted is not None and self.state in (STARTING, RUNNING))

    def shutdown(self) -> None:
        """The module closes: the server is asked to stop (its training workers keep running)."""
        if self._adopted is not None:
            terminateProcess(self._adopted["pid"])
        elif self.runner.isRunning():
            self.runner.terminate()

    def poll(self) -> None:
        """Advance start-up or shut-down: probe ``/health``, time out, or kill a server that does not stop."""
        if self.state == STARTING:
            probe = self.probe if self._adopted is None else self.adoptProbe
            if self.submit is None:
                self._onProbe(self.url, bool(probe(self.url, self.token)))
            elif not self._probing:
                self._probing = True
                url = self.url
                self.submit("Probing the local backend", probe, url, self.token,
                            onSuccess=lambda ok: self._onProbe(url, bool(ok)),
                            onError=lambda exc: self._onProbe(url, False))
            if self.state == STARTING and self.clock() > self._deadline:
                if self._adopted is not None:  # left running but not answering with its token: start our own
                    logger.warning("the local backend left running (pid %s) does not answer", self._adopted["pid"])
                    self._adopted = None
                    removeState(self.workspace)
                    if self._lock is None or not self._lock.acquire():
                        self._setState(FAILED, "A local backend left running on {} does not answer: stop it (or "
                                               "restart the computer), then press Start.".format(self.workspace))
                        return
                    command, environment, port = self._launch
                    self._launchServer(command, environment, port)
                    return
                self.runner.killDirectChild()
                self._setState(FAILED, "The local backend did not answer within {:g} s. {}".format(
                    self.startTimeout, self._lastLines()))
        elif self.state == STOPPING and self._adopted is not None:
            if not processAlive(self._adopted["pid"]):
                self._stopped()
            elif self.clock() > self._deadline:
                terminateProcess(self._adopted["pid"], hard=True)
        elif self.state == STOPPING and self.clock() > self._deadline and self.runner.isRunning():
            logger.warning("the local backend did not stop within %g s; killing it", self.stopGrace)
            # the server only: its training workers run in their own sessions / process groups
            # (tskd.service.workers) and the next server adopts them; kill() would end the whole tree
            self.runner.killDirectChild()

    def _onProbe(self, url: str, ok: bool) -> None:
        self._probing = False
        if ok and self.state == STARTING and url == self.url:
            if self._adopted is not None:
                self._setState(RUNNING, "Reconnected to the local backend left running at {} (process {}).".format(
                    self.url, self._adopted["pid"]))
                return
            pid = self.runner.processId()
            if pid:  # for the next session, should this one end without stopping it (issue 32, item 8)
                try:
                    writeState(self.workspace, pid, int(self.url.rsplit(":", 1)[1]), self.token)
                except (OSError, ValueError):
                    logger.warning("could not record the local backend for the next session", exc_info=True)
            self._setState(RUNNING, "The local backend runs at {}.".format(self.url))

    def _stopped(self) -> None:
        """The server ended: nothing to reconnect to, the workspace free for the next start."""
        self._adopted = None
        if self.workspace:
            removeState(self.workspace)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._setState(STOPPED, "The local backend is stopped.")

    def stop(self) -> None:
        """Ask the server to stop; it is killed when it is still running after ``stopGrace`` seconds.

        Only the server process is stopped (SIGTERM, then SIGKILL; on Windows TerminateProcess), never
        its descendants: training workers keep running and a restarted server adopts them.
        """
        if self._adopted is not None:  # not our child: by its recorded pid (the server only)
            self._deadline = self.clock() + self.stopGrace
            self._setState(STOPPING, "Stopping the local backend...")
            terminateProcess(self._adopted["pid"])
            return
        if not self.runner.isRunning():
            if self.state != STOPPED:
                self._stopped()
            return
        self._deadline = self.clock() + self.stopGrace
        self._setState(STOPPING, "Stopping the local backend...")
        self.runner.terminate()

    def client(self, timeout: float = 30.0) -> TSKDClient:
        """A client of the running server."""
        if not self.url:
            raise RuntimeError("the local backend was never started")
        return TSKDClient(self.url, token=self.token, timeout=timeout)

    def _onOutput(self) -> None:
        text = self.runner.readOutput()
        if not text:
            return
        self._outputTail = (self._outputTail + text)[-4000:]
        match = _LISTENING.search(self._outputTail)
        if match and self.state == STARTING:
            self.url = match.group(1).rstrip(";")
        self.output.emit(text)

    def _onFinished(self, exitCode: int, status: str) -> None:
        self._onOutput()
        if self._adopted is not None:
            return  # an earlier run of the runner; the adopted server is watched by its pid
        if self.state == STARTING and self._exitWithParent and "unrecognized arguments" in self._outputTail \
                and EXIT_WITH_PARENT in self._outputTail:
            # a backend environment older than the flag: start it without (the recorded state still lets
            # the next session reconnect to or stop an orphan)
            logger.warning("the backend does not know %s; started without it", EXIT_WITH_PARENT)
            _WITHOUT_EXIT_FLAG.add(tuple(self._launch[0]))
            self._outputTail = ""
            command, environment, port = self._launch
            self._launchServer(command, environment, port, self.token)
            return
        if self.state == STOPPING:
            self._stopped()
        elif self.state in (STARTING, RUNNING):
            if self.workspace:
                removeState(self.workspace)
            if self._lock is not None:
                self._lock.release()
                self._lock = None
            self._setState(FAILED, "The local backend stopped unexpectedly (exit code {}). {}".format(
                exitCode, self._lastLines()))

    def _lastLines(self) -> str:
        lines = [line for line in self._outputTail.splitlines() if line.strip()]
        errors = [line for line in lines if "error" in line.lower()]
        shown = errors[-2:] or lines[-2:]
        return ("Its last words: " + " / ".join(shown)) if shown else "It printed nothing."

    def _setState(self, state: str, message: str) -> None:
        self.state = state
        logger.info("local backend: %s", message)
        self.stateChanged.emit(state, message)


def _probeHealth(url: str, token: str) -> bool:
    try:
        answer: Dict[str, Any] = TSKDClient(url, token=token, timeout=1.0).health()
    except TSKDClientError:
        return False
    return isinstance(answer, dict) and answer.get("status") == "ok"


def _probeWithToken(url: str, token: str) -> bool:
    """A server left running answers ``/info`` with the recorded token: it is ours to reconnect to."""
    try:
        TSKDClient(url, token=token, timeout=1.0).info()
    except TSKDClientError:
        return False
    return True


NO_ENVIRONMENT = "Set up the local backend first (panel above), or connect to a server."
SET_UP_OR_CONNECT = "Set up the local backend (panel above), or choose 'A server'."
NOT_ENCRYPTED_DECLINED = "Not connected: the address is not encrypted. Use the server's https:// address."
ENTER_ADDRESS = "Enter the server's address, like https://server.hospital.org:8443."
_SETTINGS = "SlicerTSKD/Backend/"


@dataclass
class BackendSettings:
    """What the panel keeps between sessions: local or remote mode, the remote address, the local workspace."""

    remote: bool
    url: str
    workspace: str


class BackendLogic:
    """The "Backend server" panel's decisions, without Qt.

    Args:
        local: the local backend (``LocalBackend(QProcessRunner(), submit=session.submit)`` in Slicer).
        settings: ``qt.QSettings()`` in Slicer (``value`` / ``setValue``); default: in memory.
        defaultWorkspace: the local backend's workspace when none was chosen (:func:`defaultWorkspace`).
        childEnvironment: the local server's environment (without Slicer's own Python variables).

    Attributes:
        environment: the ready backend environment (``EnvironmentInfo``) the environment panel found, or None.
    """

    def __init__(self, local: LocalBackend, settings: Any = None, defaultWorkspace: str = "",
                 childEnvironment: Optional[Mapping[str, str]] = None) -> None:
        from ..settingsStore import MemorySettings

        self.local = local
        self.settings = settings if settings is not None else MemorySettings()
        self.defaultWorkspace = defaultWorkspace
        self.childEnvironment: Dict[str, str] = dict(childEnvironment if childEnvironment is not None else os.environ)
        self.environment: Any = None
        self._acceptedPlain: set = set()

    # -------------------------------------------------------------- settings
    def loadSettings(self) -> BackendSettings:
        value = self.settings.value
        return BackendSettings(remote=str(value(_SETTINGS + "Mode", "local")) == "remote",
                               url=str(value(_SETTINGS + "URL", "") or ""),
                               workspace=str(value(_SETTINGS + "Workspace", self.defaultWorkspace) or ""))

    def saveSettings(self, chosen: BackendSettings) -> None:
        """Keep the mode, the address and the workspace (the token is never stored)."""
        self.settings.setValue(_SETTINGS + "Mode", "remote" if chosen.remote else "local")
        self.settings.setValue(_SETTINGS + "URL", chosen.url.strip())
        self.settings.setValue(_SETTINGS + "Workspace", chosen.workspace)

    # ----------------------------------------------------------------- local
    def localActive(self) -> bool:
        """Starting, running or stopping (Start does not apply)."""
        return self.local.state in (STARTING, RUNNING) or self.local.needsPolling()

    def canStartLocal(self) -> bool:
        return self.environment is not None and not self.localActive()

    def canStopLocal(self) -> bool:
        return self.local.canStop()

    def startLocal(self, workspace: str) -> Optional[str]:
        """Start ``tskd serve`` from the ready environment (returns at once); the reason it cannot, or None."""
        if self.environment is None:
            return NO_ENVIRONMENT
        try:
            self.local.start(self.environment.backendCommand, workspace or self.defaultWorkspace, self.childEnvironment)
        except (OSError, RuntimeError, ValueError) as exc:
            return "Cannot start the local backend: {}".format(exc)
        return None

    def stopLocal(self) -> None:
        self.local.stop()

    @staticmethod
    def dropsConnection(state: str, remote: bool, connected: bool) -> bool:
        """The local backend stopped or failed while the panel is in local mode and connected to it."""
        return state in (STOPPED, FAILED) and connected and not remote

    def idleText(self, remote: bool, connected: bool) -> Optional[str]:
        """The status line when, in local mode, there is nothing to start and nothing connected; else None."""
        if not remote and self.environment is None and self.local.state == STOPPED and not connected:
            return SET_UP_OR_CONNECT
        return None

    # ---------------------------------------------------------------- remote
    @staticmethod
    def remoteClient(url: str, token: str) -> Tuple[Optional[TSKDClient], Optional[str]]:
        """``(client, None)`` for a typed address and token, or ``(None, what to type)``."""
        try:
            return TSKDClient(url.strip(), token=token.strip() or None), None
        except ValueError:
            return None, ENTER_ADDRESS

    def insecureQuestion(self, url: str) -> Optional[str]:
        """What to ask before connecting to ``url`` over plain http to another machine (None: nothing to ask,
        or this address was already accepted in this session). Issue 32, item 11."""
        from .client import is_unencrypted_remote

        url = url.strip()
        if not is_unencrypted_remote(url) or url in self._acceptedPlain:
            return None
        return ("{} is not encrypted (http://, not https://): the patient images you send, the segmentations and "
                "the access token would cross the network readable by anyone on its path.\n\nUse the https:// "
                "address of the server if it has one. Connect without encryption only on a private network you "
                "trust. Connect anyway?".format(url))

    def acceptPlain(self, url: str) -> None:
        """The user accepted an unencrypted connection to ``url`` (until Slicer closes; never stored)."""
        self._acceptedPlain.add(url.strip())

    def cleanup(self) -> None:
        """The module closes: the server is asked to stop (its training workers keep running)."""
        self.local.shutdown()
