"""Long calls (network transfers, predictions, whole-volume segmentation) off the GUI thread.

Slicer's GUI thread must never wait for the network. :class:`TaskRunner` runs a function in a
worker thread and hands its result (or its exception) back to the thread that calls
:meth:`TaskRunner.poll`: in Slicer a ``qt.QTimer`` of the module widget calls ``poll()`` every
100 ms while tasks are pending, so every callback, and with it every change to the MRML scene or
the widgets, runs on the GUI thread. Tests call :meth:`TaskRunner.waitAll`.

The worker functions must not touch the MRML scene or Qt objects: they get plain values (file
paths, numpy arrays copied from the scene) and return plain values.

Cancellation is cooperative: a task's function may take the :class:`Task` (``passTask=True``) and
check :meth:`Task.isCancelled` between steps. A task cancelled before its result is delivered
never calls ``onSuccess``: ``onError`` gets :class:`TaskCancelled` instead, so a result that
arrives after Cancel is never applied.

Exit: the workers are daemon threads (not ``concurrent.futures``, whose non-daemon workers are
joined when the interpreter finalizes: CTK's python manager calls ``Py_Finalize()`` when Slicer
quits, which would wait for a transfer of up to 600 s). :meth:`TaskRunner.shutdown` drops the
queued tasks without running them, cancels the running ones and returns at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, List, Optional

__all__ = ["Task", "TaskRunner", "TaskCancelled"]

logger = logging.getLogger(__name__)


class TaskCancelled(Exception):
    """Given to ``onError`` of a task that was cancelled (its result, if any, is dropped)."""


class Task:
    """One submitted call.

    Attributes:
        name: what it does, for logs and the GUI (``"Uploading case_001"``).
        result: the function's return value once it succeeded.
        error: the exception it raised, once it failed.
        done: True once its callback was delivered.
        progress: fraction done (0..1) that the function may set for the GUI to show, or None.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.progress: Optional[float] = None
        self.result: Any = None
        self.error: Optional[BaseException] = None
        self.done = False
        self._cancel = threading.Event()

    def cancel(self) -> None:
        """Ask the function to stop (it checks :meth:`isCancelled`); ``onError`` then gets :class:`TaskCancelled`."""
        self._cancel.set()

    def isCancelled(self) -> bool:
        return self._cancel.is_set()

    def __repr__(self) -> str:
        return "Task({!r}, done={})".format(self.name, self.done)


class TaskRunner:
    """Runs functions in worker threads; delivers their results on the polling thread.

    Args:
        maxWorkers: calls that run at once (later ones wait in a queue).

    Example::

        runner = TaskRunner()
        runner.submit("Downloading model", client.download_model, modelId, path,
                      onSuccess=self.onDownloaded, onError=self.showError)
        # a qt.QTimer calls runner.poll() on the GUI thread while runner.pending() > 0
    """

    def __init__(self, maxWorkers: int = 2) -> None:
        if maxWorkers < 1:
            raise ValueError("maxWorkers must be at least 1, got {}".format(maxWorkers))
        self._maxWorkers = maxWorkers
        self._queue: "queue.Queue[Optional[Callable[[], None]]]" = queue.Queue()
        self._threads: List[threading.Thread] = []
        self._finished: "queue.Queue[tuple]" = queue.Queue()
        self._pending: Dict[int, Task] = {}
        self._lock = threading.Lock()
        self._closed = False

    def _ensureWorkers(self) -> None:
        """Start daemon worker threads as work arrives (up to ``maxWorkers``); called under the lock."""
        busy = sum(1 for thread in self._threads if thread.is_alive())
        if busy < self._maxWorkers and len(self._pending) > busy:
            thread = threading.Thread(target=self._work, name="SlicerTSKD-{}".format(len(self._threads)), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._closed:
                return
            job()

    def submit(
        self,
        name: str,
        function: Callable[..., Any],
        *args: Any,
        onSuccess: Optional[Callable[[Any], None]] = None,
        onError: Optional[Callable[[BaseException], None]] = None,
        passTask: bool = False,
    ) -> Task:
        """Run ``function(*args)`` (``function(task, *args)`` with ``passTask``) in a worker thread.

        Args:
            name: what the call does.
            function: the blocking call; it must not touch the scene or Qt.
            onSuccess: called with the result, on the polling thread.
            onError: called with the exception, on the polling thread (default: logged).
            passTask: give the :class:`Task` to ``function`` as its first argument (to check cancel).
        """
        task = Task(name)
        with self._lock:
            if self._closed:
                raise RuntimeError("TaskRunner: shut down; '{}' was not started".format(name))
            self._pending[id(task)] = task

        def run() -> None:
            if task.isCancelled():  # cancelled while queued: never started
                self._finished.put((task, None, TaskCancelled(name), onSuccess, onError))
                return
            try:
                value = function(task, *args) if passTask else function(*args)
            except BaseException as exc:  # delivered to onError on the polling thread
                self._finished.put((task, None, exc, onSuccess, onError))
            else:
                self._finished.put((task, value, None, onSuccess, onError))

        with self._lock:
            self._queue.put(run)
            self._ensureWorkers()
        return task

    def pending(self) -> int:
        """Tasks submitted whose callbacks were not delivered yet."""
        with self._lock:
            return len(self._pending)

    def busy(self, name: Optional[str] = None) -> bool:
        """True while a task (named ``name``, when given) is pending."""
        with self._lock:
            return any(name is None or task.name == name for task in self._pending.values())

    def poll(self) -> int:
        """Deliver the callbacks of finished tasks on this thread; returns how many were delivered.

        A callback that raises is logged and does not stop the others.
        """
        delivered = 0
        while True:
            try:
                task, value, error, onSuccess, onError = self._finished.get_nowait()
            except queue.Empty:
                return delivered
            with self._lock:
                self._pending.pop(id(task), None)
            if error is None and task.isCancelled():
                value, error = None, TaskCancelled(task.name)  # Cancel wins over a late result
            task.result, task.error, task.done = value, error, True
            delivered += 1
            try:
                if error is None:
                    if onSuccess is not None:
                        onSuccess(value)
                elif onError is not None:
                    onError(error)
                else:
                    logger.error("%s failed: %s", task.name, error)
            except Exception:
                logger.exception("the callback of '%s' failed", task.name)

    def waitAll(self, timeout: float = 60.0, interval: float = 0.02) -> bool:
        """Poll until no task is pending (tests and scripts); returns False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if not self.pending():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(interval)

    def shutdown(self) -> None:
        """Cancel every pending task, drop the queued ones, stop accepting tasks; returns at once.

        Running calls see :meth:`Task.isCancelled` (and their client's :meth:`abort`, which the owner
        calls); being daemon threads they never hold up the interpreter's exit.
        """
        with self._lock:
            self._closed = True
            tasks = list(self._pending.values())
            while True:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            for _ in self._threads:
                self._queue.put(None)
        for task in tasks:
            task.cancel()
