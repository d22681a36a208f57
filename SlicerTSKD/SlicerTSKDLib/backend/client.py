"""Client of the SlicerTSKD backend service (``tskd serve``), standard library only.

Runs inside 3D Slicer (Python 3.9) and anywhere else: one method per route of the HTTP API
(``docs/service-api.md``), one ``_request()`` helper with explicit timeouts and TLS verification
on, uploads streamed from disk, downloads streamed to disk (written atomically). Every call
blocks: call it from a worker thread or a ``qt.QTimer``-driven step, never on the GUI thread.

Errors: the server's answers with a status >= 400 raise :class:`TSKDClientError` (``status`` and
the server's message); a server that cannot be reached raises :class:`TSKDConnectionError`.

Example::

    client = TSKDClient("http://127.0.0.1:8000", token=None)
    project = client.create_project("liver", [{"value": 1, "name": "liver", "color": [0.9, 0.1, 0.1]}])
    client.upload_case(project["id"], "case_001", "/data/case_001.nii.gz", "/data/case_001-label.nii.gz")
    job = client.start_job(project["id"], preset="cpu-small")
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import os
import socket
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = ["TSKDClient", "TSKDClientError", "TSKDConnectionError", "TSKDTransferAborted", "API_PREFIX"]

API_PREFIX = "/api/v1"
_CHUNK = 1 << 20
_ERROR_BODY_LIMIT = 65536


class TSKDClientError(Exception):
    """The server answered with an error.

    Attributes:
        status: the HTTP status (None for :class:`TSKDConnectionError`).
        message: the server's explanation (its ``detail``), or a description of the failure.
    """

    def __init__(self, status: Optional[int], message: str) -> None:
        super().__init__(f"{status}: {message}" if status is not None else message)
        self.status = status
        self.message = message


class TSKDConnectionError(TSKDClientError):
    """The server could not be reached (not running, wrong address, network, TLS, timeout)."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class TSKDTransferAborted(TSKDConnectionError):
    """A transfer was stopped by :meth:`TSKDClient.abort` or the call's ``cancel``."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: they would carry the token to another address."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


class _MultipartBody:
    """A ``multipart/form-data`` body read from disk in chunks as it is sent (never whole in memory)."""

    def __init__(self, fields: List[Tuple[str, str]], files: List[Tuple[str, str]],
                 progress: Optional[Callable[[int, int], None]] = None) -> None:
        self.boundary = uuid.uuid4().hex
        self.progress = progress
        self.stopped: Callable[[], bool] = lambda: False  # set by _request: abort or cancel
        self._parts: List[Tuple[bytes, Optional[str]]] = []
        for name, value in fields:
            head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n"
                    f"{value}\r\n").encode("utf-8")
            self._parts.append((head, None))
        for name, path in files:
            filename = os.path.basename(path).replace('"', "%22").replace("\r", "").replace("\n", "")
            head = (f"--{self.boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                    f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n").encode("utf-8")
            self._parts.append((head, path))
        self._tail = f"--{self.boundary}--\r\n".encode("ascii")

    @property
    def content_type(self) -> str:
        return f"multipart/form-data; boundary={self.boundary}"

    def __len__(self) -> int:
        total = len(self._tail)
        for head, path in self._parts:
            total += len(head) + (os.path.getsize(path) + 2 if path is not None else 0)
        return total

    def __iter__(self) -> Iterator[bytes]:
        total, sent = len(self), 0
        for head, path in self._parts:
            yield head
            sent += len(head)
            if path is not None:
                with open(path, "rb") as stream:
                    while True:
                        if self.stopped():
                            raise TSKDTransferAborted("the upload was cancelled")
                        chunk = stream.read(_CHUNK)
                        if not chunk:
                            break
                        yield chunk
                        sent += len(chunk)
                        if self.progress is not None:
                            self.progress(sent, total)  # called from the thread that sends
                yield b"\r\n"
                sent += 2
        yield self._tail
        if self.progress is not None:
            self.progress(total, total)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def is_unencrypted_remote(url: str) -> bool:
    """Whether ``url`` is plain ``http://`` to another machine: images and the token would cross the
    network unencrypted (issue 32, item 11). Loopback addresses (this computer) are not."""
    parsed = urllib.parse.urlparse(str(url).strip())
    return parsed.scheme.lower() == "http" and not _is_loopback((parsed.hostname or "").lower())


class TSKDClient:
    """One backend server.

    Args:
        base_url: the server, e.g. ``http://127.0.0.1:8000`` (``/api/v1`` is added when missing).
        token: the server's token (sent as ``Authorization: Bearer``), or None.
        timeout: seconds to wait for the server on each ordinary call (connect and each read).
        transfer_timeout: seconds allowed for uploads, downloads and predictions, which wait for
            files to be checked or images segmented.
        ca_file: a CA bundle (PEM) for servers with a certificate of a private authority; TLS
            certificates are always verified.
    """

    def __init__(self, base_url: str, token: Optional[str] = None, timeout: float = 30.0,
                 transfer_timeout: float = 600.0, ca_file: Optional[str] = None) -> None:
        parsed = urllib.parse.urlsplit(base_url.strip())
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"base_url must look like http://HOST:PORT, got {base_url!r}")
        path = parsed.path.rstrip("/")
        if not path.endswith(API_PREFIX):
            path += API_PREFIX
        self.server_url = f"{parsed.scheme}://{parsed.netloc}"
        self.api_url = self.server_url + path
        self.token = token or None
        self.timeout = float(timeout)
        self.transfer_timeout = float(transfer_timeout)
        handlers: List[Any] = [_NoRedirect()]
        if parsed.scheme == "https":
            handlers.append(urllib.request.HTTPSHandler(context=ssl.create_default_context(cafile=ca_file)))
        if _is_loopback(parsed.hostname):
            handlers.append(urllib.request.ProxyHandler({}))  # never send local traffic through a proxy
        self._opener = urllib.request.build_opener(*handlers)
        self._aborted = threading.Event()

    def abort(self) -> None:
        """Stop every transfer of this client at its next chunk (1 MiB) and refuse new calls.

        Called when Slicer closes the module, so no worker thread keeps a transfer going.
        """
        self._aborted.set()

    # -- the one request helper ---------------------------------------------------------------
    def _request(self, method: str, path: str, *, json_body: Any = None, form: Optional[_MultipartBody] = None,
                 dest_path: Optional[str] = None, timeout: Optional[float] = None,
                 query: Optional[Dict[str, str]] = None, cancel: Optional[Callable[[], bool]] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> Any:
        """Send one request; returns the decoded JSON answer, or the path written for downloads.

        Args:
            method: HTTP method.
            path: route below ``/api/v1``, e.g. ``/projects``.
            json_body: sent as JSON.
            form: a multipart body streamed from disk.
            dest_path: write the answer's body to this file (atomically) instead of decoding it.
            timeout: seconds for this call (default: ``self.timeout``).
            query: query string parameters.
            cancel: returns True to stop the transfer (checked between chunks).
            progress: for downloads, called with ``(bytes received, bytes in all or 0 when unknown)``.

        Raises:
            TSKDTransferAborted: :meth:`abort` was called or ``cancel()`` returned True.
            TSKDClientError: the server answered with an error status.
            TSKDConnectionError: the server could not be reached or did not answer in time.
        """
        def stopped() -> bool:
            return self._aborted.is_set() or (cancel is not None and bool(cancel()))

        if stopped():
            raise TSKDTransferAborted("cancelled before '{} {}' was sent".format(method, path))
        url = self.api_url + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        headers = {"Accept": "application/json"}
        data: Any = None
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            data = json.dumps(json_body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        elif form is not None:
            form.stopped = stopped
            data = form
            headers["Content-Type"] = form.content_type
            headers["Content-Length"] = str(len(form))
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        limit = self.timeout if timeout is None else timeout
        try:
            with self._opener.open(request, timeout=limit) as response:
                if dest_path is not None:
                    return self._save(response, dest_path, stopped, progress)
                body = response.read()
        except urllib.error.HTTPError as exc:
            raise self._error(exc) from None
        except TSKDTransferAborted:
            raise
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TSKDTransferAborted):
                raise exc.reason from None
            reason = exc.reason
            if form is not None and isinstance(reason, (ConnectionResetError, BrokenPipeError)):
                self._why_upload_was_cut(reason)
            if isinstance(reason, ssl.SSLError):
                text = f"TLS check failed ({reason}); is the server's certificate trusted (ca_file)?"
            else:
                text = str(reason)
            raise TSKDConnectionError(f"cannot reach the backend at {self.server_url}: {text}") from None
        except (socket.timeout, TimeoutError):
            raise TSKDConnectionError(
                f"cannot reach the backend at {self.server_url}: no answer within {limit:g} s") from None
        except (ConnectionError, OSError) as exc:
            raise TSKDConnectionError(f"cannot reach the backend at {self.server_url}: {exc}") from None
        except http.client.HTTPException as exc:  # e.g. IncompleteRead: the server stopped mid-answer
            raise TSKDConnectionError(
                f"cannot reach the backend at {self.server_url}: its answer was cut off "
                f"({type(exc).__name__}); was the server stopped?") from None
        if not body:
            return None
        try:
            return json.loads(body.decode("utf-8"))
        except ValueError:
            raise TSKDClientError(200, f"the server at {self.server_url} sent an answer that is not JSON") from None

    def _why_upload_was_cut(self, reason: BaseException) -> None:
        """A server refuses a large upload (bad token, unknown id) by closing the connection while
        the body is still being sent; ask it with a small request what it objects to."""
        try:
            self._request("GET", "/info")
        except TSKDClientError as exc:
            if exc.status is not None:
                raise TSKDClientError(exc.status, exc.message) from None
        raise TSKDConnectionError(
            f"cannot reach the backend at {self.server_url}: the server closed the connection during the upload "
            f"({reason}); check the file size limit in info()['limits']"
        )

    @staticmethod
    def _save(response: Any, dest_path: str, stopped: Callable[[], bool] = lambda: False,
              progress: Optional[Callable[[int, int], None]] = None) -> str:
        dest_path = os.path.abspath(dest_path)
        try:
            total = int(response.headers.get("Content-Length") or 0)
        except (AttributeError, TypeError, ValueError):
            total = 0
        received = 0
        folder = os.path.dirname(dest_path)
        if folder:
            os.makedirs(folder, exist_ok=True)
        tmp = f"{dest_path}.{uuid.uuid4().hex[:8]}.partial"
        try:
            with open(tmp, "wb") as stream:
                while True:
                    if stopped():
                        raise TSKDTransferAborted("the download of {} was cancelled".format(os.path.basename(dest_path)))
                    chunk = response.read(_CHUNK)
                    if not chunk:
                        break
                    stream.write(chunk)
                    received += len(chunk)
                    if progress is not None:
                        progress(received, total)
            os.replace(tmp, dest_path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
        return dest_path

    def _error(self, exc: urllib.error.HTTPError) -> TSKDClientError:
        message = exc.reason if isinstance(exc.reason, str) else "error"
        try:
            raw = exc.read(_ERROR_BODY_LIMIT)
            detail = json.loads(raw.decode("utf-8")).get("detail")
            if isinstance(detail, str) and detail:
                message = detail
        except Exception:  # a proxy's HTML error page, an empty body...
            pass
        finally:
            exc.close()
        return TSKDClientError(exc.code, message)

    @staticmethod
    def _quote(text: str) -> str:
        return urllib.parse.quote(str(text), safe="")

    # -- system -------------------------------------------------------------------------------
    def health(self) -> Dict[str, Any]:
        """``{"status": "ok", "version": ...}`` (needs no token)."""
        return self._request("GET", "/health")

    def info(self) -> Dict[str, Any]:
        """Version, compute device and GPUs, base checkpoints, presets, limits."""
        return self._request("GET", "/info")

    # -- projects -----------------------------------------------------------------------------
    def create_project(self, name: str, labels: List[Dict[str, Any]],
                       settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Create a project; ``labels`` are ``{"value", "name", "color": [r, g, b] in 0..1}``."""
        return self._request("POST", "/projects",
                             json_body={"name": name, "labels": labels, "settings": settings or {}})

    def list_projects(self) -> List[Dict[str, Any]]:
        return self._request("GET", "/projects")["projects"]

    def get_project(self, project_id: str) -> Dict[str, Any]:
        return self._request("GET", f"/projects/{self._quote(project_id)}")

    def update_project(self, project_id: str, name: Optional[str] = None,
                       labels: Optional[List[Dict[str, Any]]] = None,
                       settings: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """Change the name, labels or settings (only the arguments given)."""
        body: Dict[str, Any] = {}
        if name is not None:
            body["name"] = name
        if labels is not None:
            body["labels"] = labels
        if settings is not None:
            body["settings"] = settings
        return self._request("PATCH", f"/projects/{self._quote(project_id)}", json_body=body)

    def delete_project(self, project_id: str) -> None:
        self._request("DELETE", f"/projects/{self._quote(project_id)}")

    # -- cases --------------------------------------------------------------------------------
    def upload_case(self, project_id: str, name: str, image_path: str, label_path: Optional[str] = None,
                    replace: bool = False, cancel: Optional[Callable[[], bool]] = None,
                    progress: Optional[Callable[[int, int], None]] = None) -> Dict[str, Any]:
        """Upload an image (and its label map) as case ``name``, streamed from disk.

        The server checks the files before accepting them; a problem raises
        :class:`TSKDClientError` with the server's explanation (status 4xx). ``cancel`` stops the
        upload at its next chunk (:class:`TSKDTransferAborted`); ``progress(sent, total)`` follows it.
        """
        files = [("image", str(image_path))]
        if label_path is not None:
            files.append(("label", str(label_path)))
        form = _MultipartBody([("name", name), ("replace", "true" if replace else "false")], files, progress=progress)
        return self._request("POST", f"/projects/{self._quote(project_id)}/cases", form=form,
                             timeout=self.transfer_timeout, cancel=cancel)

    def list_cases(self, project_id: str) -> List[Dict[str, Any]]:
        return self._request("GET", f"/projects/{self._quote(project_id)}/cases")["cases"]

    def get_case(self, project_id: str, name: str) -> Dict[str, Any]:
        return self._request("GET", f"/projects/{self._quote(project_id)}/cases/{self._quote(name)}")

    def download_case_image(self, project_id: str, name: str, dest_path: str,
                            cancel: Optional[Callable[[], bool]] = None,
                            progress: Optional[Callable[[int, int], None]] = None) -> str:
        """Save the stored image (``.nii.gz``) to ``dest_path``; returns the path."""
        return self._request("GET", f"/projects/{self._quote(project_id)}/cases/{self._quote(name)}/image",
                             dest_path=dest_path, timeout=self.transfer_timeout, cancel=cancel, progress=progress)

    def download_case_label(self, project_id: str, name: str, dest_path: str) -> str:
        """Save the stored label map (``.nii.gz``) to ``dest_path``; returns the path."""
        return self._request("GET", f"/projects/{self._quote(project_id)}/cases/{self._quote(name)}/label",
                             dest_path=dest_path, timeout=self.transfer_timeout)

    def delete_case(self, project_id: str, name: str) -> None:
        self._request("DELETE", f"/projects/{self._quote(project_id)}/cases/{self._quote(name)}")

    # -- jobs ---------------------------------------------------------------------------------
    def start_job(self, project_id: str, preset: Optional[str] = None, settings: Optional[Dict[str, Any]] = None,
                  base: Optional[str] = None, update_from: Optional[str] = None) -> Dict[str, Any]:
        """Start training on the project's current cases; returns the job (``id``, ``state``...).

        ``update_from`` (a model or job id of this project) updates that finished model with the current
        cases instead of training from scratch.
        """
        body: Dict[str, Any] = {"settings": settings or {}}
        if preset is not None:
            body["preset"] = preset
        if base is not None:
            body["base"] = base
        if update_from is not None:
            body["update_from"] = update_from
        return self._request("POST", f"/projects/{self._quote(project_id)}/jobs", json_body=body)

    def list_jobs(self, project_id: str) -> List[Dict[str, Any]]:
        return self._request("GET", f"/projects/{self._quote(project_id)}/jobs")["jobs"]

    def job_status(self, job_id: str) -> Dict[str, Any]:
        """State, progress (stage, step/total, ETA, metrics), error, log tail, model id when done."""
        return self._request("GET", f"/jobs/{self._quote(job_id)}")

    def cancel_job(self, job_id: str) -> Dict[str, Any]:
        return self._request("POST", f"/jobs/{self._quote(job_id)}/cancel")

    def resume_job(self, job_id: str) -> Dict[str, Any]:
        return self._request("POST", f"/jobs/{self._quote(job_id)}/resume")

    def download_job_log(self, job_id: str, dest_path: str, source: str = "output") -> str:
        """Save the job's whole log (``output``: the worker's console; ``run``: the pipeline's log.txt)."""
        return self._request("GET", f"/jobs/{self._quote(job_id)}/log", query={"source": source},
                             dest_path=dest_path, timeout=self.transfer_timeout)

    def wait_for_job(self, job_id: str, timeout: float = 3600.0, poll_interval: float = 2.0,
                     callback: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
        """Poll until the job is no longer queued or running; returns its last status.

        Raises:
            TimeoutError: the job is still active after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            status = self.job_status(job_id)
            if callback is not None:
                callback(status)
            if status["state"] not in ("queued", "running"):
                return status
            if time.monotonic() >= deadline:
                raise TimeoutError(f"job {job_id} is still {status['state']} after {timeout:g} s")
            time.sleep(poll_interval)

    # -- foundation models (checkpoints) ------------------------------------------------------
    def list_checkpoints(self) -> List[Dict[str, Any]]:
        """Foundation models: the catalog (present or not, in the backend's order of preference for its device), imported weights, workspace files;
        each with ``name, architecture, state, size_bytes, sha256, downloadable, fetch``."""
        return self._request("GET", "/checkpoints")["checkpoints"]

    def get_checkpoint(self, name: str) -> Dict[str, Any]:
        return self._request("GET", f"/checkpoints/{self._quote(name)}")

    def fetch_checkpoint(self, name: str) -> Dict[str, Any]:
        """Ask the server to download catalog model ``name`` in the background; poll :meth:`get_checkpoint`."""
        return self._request("POST", f"/checkpoints/{self._quote(name)}/fetch")

    def cancel_fetch(self, name: str) -> Dict[str, Any]:
        """Stop a download; the bytes received are kept and the next fetch resumes them."""
        return self._request("POST", f"/checkpoints/{self._quote(name)}/fetch/cancel")

    def import_checkpoint(self, path: str, name: Optional[str] = None,
                          progress: Optional[Callable[[int, int], None]] = None,
                          cancel: Optional[Callable[[], bool]] = None) -> Dict[str, Any]:
        """Upload a weights file (``.pth``, ``.safetensors``...); the server checks it is SAM / MedSAM.

        Args:
            path: the file.
            name: the name to record it under (default: the catalog's name for a catalog file, else the
                file name).
            progress: called with ``(bytes sent, bytes in all)`` from the sending thread.
        """
        fields = [("name", name)] if name else []
        form = _MultipartBody(fields, [("weights", str(path))], progress=progress)
        return self._request("POST", "/checkpoints", form=form, timeout=self.transfer_timeout, cancel=cancel)

    def delete_checkpoint(self, name: str) -> None:
        self._request("DELETE", f"/checkpoints/{self._quote(name)}")

    def download_checkpoint_box_model(self, name: str, dest_path: str, cancel: Optional[Callable[[], bool]] = None,
                                      progress: Optional[Callable[[int, int], None]] = None) -> str:
        """Save foundation model ``name`` as an ONNX box model zip (``box_encoder.onnx``, ``box_decoder.onnx``,
        ``box_model.json``) to ``dest_path``. The backend exports it on the first request (about a minute on
        two cores), so the call may wait that long before the first byte.

        Raises:
            TSKDClientError: 404 unknown name, 409 the weights are not on the backend yet, 422 not SAM-family.
        """
        return self._request("GET", f"/checkpoints/{self._quote(name)}/box-model", dest_path=dest_path,
                             timeout=self.transfer_timeout, cancel=cancel, progress=progress)

    # -- models -------------------------------------------------------------------------------
    def list_models(self, project_id: str) -> List[Dict[str, Any]]:
        return self._request("GET", f"/projects/{self._quote(project_id)}/models")["models"]

    def get_model(self, model_id: str) -> Dict[str, Any]:
        return self._request("GET", f"/models/{self._quote(model_id)}")

    def download_model(self, model_id: str, dest_path: str, cancel: Optional[Callable[[], bool]] = None,
                       progress: Optional[Callable[[int, int], None]] = None) -> str:
        """Save the student package as a ``.tskd.zip`` (``model.onnx``, ``tskd-model.json``...)."""
        return self._request("GET", f"/models/{self._quote(model_id)}/download", dest_path=dest_path,
                             timeout=self.transfer_timeout, cancel=cancel, progress=progress)

    def download_model_box_model(self, model_id: str, dest_path: str, cancel: Optional[Callable[[], bool]] = None,
                                 progress: Optional[Callable[[int, int], None]] = None) -> str:
        """Save a model's task-tuned box model (its run's fine-tuned teacher as ONNX graphs) as a zip to
        ``dest_path``; the model's ``box_model`` field (``list_models``) says whether it has one.

        Raises:
            TSKDClientError: 404 unknown model, or a model whose run exported no box model.
        """
        return self._request("GET", f"/models/{self._quote(model_id)}/box-model", dest_path=dest_path,
                             timeout=self.transfer_timeout, cancel=cancel, progress=progress)

    def predict(self, model_id: str, image_path: str, dest_path: str,
                roi: Optional[Sequence[Tuple[Optional[int], Optional[int]]]] = None,
                cancel: Optional[Callable[[], bool]] = None,
                progress: Optional[Callable[[float], None]] = None) -> str:
        """Segment ``image_path`` on the server; the label map (same format and geometry) goes to ``dest_path``.

        Args:
            roi: numpy index bounds ``((k0, k1), (j0, j1), (i0, i1))``: only that box is segmented
                (cropped and resized on the server exactly as ``tskd.runtime`` does in Slicer).
            cancel: returns True to stop the transfer (checked between chunks).
            progress: called with the fraction done: the image sent (0..0.5), the label map received (0.5..1;
                the server segments in between).
        """
        fields = [("roi", roi_text(roi))] if roi is not None else []
        sent = (lambda done, total: progress(0.5 * done / total) if total else None) if progress else None
        received = (lambda done, total: progress(0.5 + 0.5 * min(done / total, 1.0)) if total else None) \
            if progress else None
        form = _MultipartBody(fields, [("image", str(image_path))], progress=sent)
        return self._request("POST", f"/models/{self._quote(model_id)}/predict", form=form, dest_path=dest_path,
                             timeout=self.transfer_timeout, cancel=cancel, progress=received)


    # -- suggestions --------------------------------------------------------------------------
    def suggestions(self, project_id: str, model_id: Optional[str] = None, top: Optional[int] = None,
                    teacher: Optional[bool] = None, retry: bool = False) -> Dict[str, Any]:
        """What to label next in a project: its unlabelled cases' slices, ranked by a model.

        The server computes them in the background: the answer's ``status`` is ``"computing"``
        (HTTP 202: ask again in a few seconds, without ``retry``), ``"done"`` (``result`` holds the
        ``tskd-suggestions`` JSON: ``suggestions`` ``[{rank, case, slice, axis, score, why, ...}]``
        and ``cases``) or ``"failed"`` (``error`` says why; one call with ``retry=True`` tries again).

        Args:
            model_id: a model of the project (default: its latest).
            top: number of suggested slices (server default 10).
            teacher: False to rank with the student alone (default: with the teacher when the run has one).
            retry: compute again when the cached answer is a failure (once, not while polling).

        Raises:
            TSKDClientError: 404 unknown project or model; 409 no trained model yet, or no unlabelled case.
        """
        query = {}
        if model_id is not None:
            query["model_id"] = str(model_id)
        if top is not None:
            query["top"] = str(int(top))
        if teacher is not None:
            query["teacher"] = "true" if teacher else "false"
        if retry:
            query["retry"] = "true"
        return self._request("GET", f"/projects/{self._quote(project_id)}/suggestions", query=query or None)

def roi_text(roi: Sequence[Tuple[Optional[int], Optional[int]]]) -> str:
    """Numpy index bounds as the ``k0:k1,j0:j1,i0:i1`` text of ``tskd predict --roi`` and the predict route."""
    parts = []
    for pair in roi:
        start, end = pair
        parts.append("{}:{}".format("" if start is None else int(start), "" if end is None else int(end)))
    return ",".join(parts)
