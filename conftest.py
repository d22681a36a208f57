"""Suite-wide hooks (both test folders, TSKDBackend/tests and Testing).

``make test`` runs the suite in two pytest-xdist workers. A test marked ``serial`` runs alone: it
waits until the other worker's test (its fixtures' set-up and tear-down included) is over, and that
worker starts nothing until it is done. Mark a test ``serial`` when what it asserts depends on the
machine being otherwise idle: a count of requests served in a fixed time, a bound on seconds.
Without xdist (a plain ``pytest``) the marker changes nothing.

Threads: each xdist worker gets its share of the cores (``OMP_NUM_THREADS`` and torch's intra-op
threads: cores // workers, at least 1), inherited by the processes its tests start, so two workers
on two cores do not each run two-thread torch kernels against each other (the cause of an earlier
two-worker run being slower than one process). A ``serial`` test, running alone, gets every core.

Order: with xdist, the test files go out longest first, a file's length estimated as a minute per
``slow`` test and a fraction of a second per other test, so that no long file starts last while the
other worker idles. This needs xdist's ``--no-loadscope-reorder`` (the Makefile passes it): by
default ``loadfile`` sends the files with the most tests first, which put the long single-test files
last. A plain ``pytest`` keeps the files' own order.

Home: the suite sets ``TSKD_HOME`` to a folder of its own (removed at the end), so that no test writes
into the user's weights or embedding cache; tests that need the real LiteMedSAM weights name
``tests/conftest.py``'s ``TEST_HOME``.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pytest

try:
    import fcntl
except ImportError:  # Windows: no xdist run of this suite there
    fcntl = None

_TURNS = pytest.StashKey[str]()  # the folder the workers take turns in (made by the controller)


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _use_threads(count: int) -> None:
    """This process's torch threads and those of the processes it starts from now on."""
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(count)
    torch = sys.modules.get("torch")  # set before torch is imported, the variables are enough
    if torch is not None:
        torch.set_num_threads(count)


def _worker_threads(workerinput) -> int:
    return max(1, (os.cpu_count() or 1) // max(1, int(workerinput.get("workercount", 1))))


#: a file is taken to last this long per ``slow`` test and per other test (seconds)
_SLOW_GUESS = 60.0
_TEST_GUESS = 0.3


def _file_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(session, config, items):
    if getattr(config, "workerinput", None) is None:
        return
    first: dict[str, int] = {}
    cost: dict[str, float] = {}
    for index, item in enumerate(items):
        path = _file_of(item.nodeid)
        first.setdefault(path, index)
        cost[path] = cost.get(path, 0.0) + (_SLOW_GUESS if item.get_closest_marker("slow") is not None else _TEST_GUESS)
    # longest file first; a file's tests stay together and in their order (loadfile sends whole files)
    items[:] = sorted(items, key=lambda item: (-cost[_file_of(item.nodeid)], first[_file_of(item.nodeid)]))


_HOME = pytest.StashKey[str]()  # the suite's own TSKD_HOME (made by the controller or a plain pytest)


def pytest_configure(config):
    if not hasattr(config, "workerinput"):
        # TSKD_HOME of the suite's own, inherited by the xdist workers and every process a test starts: a test
        # that does not set its own (weights cache, embedding cache of frozen encoders, settings) writes there,
        # never into the user's $TSKD_HOME or ~/.local/share/SlicerTSKD; the tests needing the real LiteMedSAM
        # weights name their own cache (tests/conftest.py, TEST_HOME)
        config.stash[_HOME] = tempfile.mkdtemp(prefix="tskd-pytest-home-")
        os.environ["TSKD_HOME"] = config.stash[_HOME]
        if fcntl is not None and config.getoption("numprocesses", None):
            config.stash[_TURNS] = tempfile.mkdtemp(prefix="tskd-pytest-turns-")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None and not any(name in os.environ for name in _THREAD_VARIABLES):
        _use_threads(_worker_threads(workerinput))  # a user's own setting wins


def pytest_unconfigure(config):
    for key in (_TURNS, _HOME):
        if key in config.stash:
            shutil.rmtree(config.stash[key], ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):  # xdist: the controller hands each worker the folder
    node.workerinput["tskd_turns"] = node.config.stash[_TURNS]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    workerinput = getattr(item.config, "workerinput", None)  # set in xdist's workers only
    if workerinput is None or "tskd_turns" not in workerinput:
        yield
        return
    folder = Path(workerinput["tskd_turns"])
    alone = item.get_closest_marker("serial") is not None
    wanted = folder / "wanted-{}".format(workerinput["workerid"])
    with open(folder / "turns.lock", "a") as lock:
        if alone:
            wanted.write_text(str(os.getpid()), encoding="utf-8")  # the other worker starts no new test now
            fcntl.flock(lock, fcntl.LOCK_EX)  # and this one waits for the test it is running
            shared = os.environ.get(_THREAD_VARIABLES[0])
            _use_threads(os.cpu_count() or 1)  # alone: every core
        else:
            while any(_alive(path) for path in folder.glob("wanted-*")):
                time.sleep(0.2)
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            if alone:
                if shared is not None:
                    _use_threads(int(shared))
                wanted.unlink()
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(wanted: Path) -> bool:
    """Whether the worker that wrote ``wanted`` still runs (a crashed one's file must not stop the others)."""
    try:
        os.kill(int(wanted.read_text(encoding="utf-8")), 0)
    except (OSError, ValueError):  # gone, or its file half-written or just removed
        return False
    return True
