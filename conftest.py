"""Suite-wide hooks (both test folders, TSKDBackend/tests and Testing).

``make test`` runs the suite in two pytest-xdist workers. A test marked ``serial`` runs alone: it
waits until the other worker's test (its fixtures' set-up and tear-down included) is over, and that
worker starts nothing until it is done. Mark a test ``serial`` when what it asserts depends on the
machine being otherwise idle: a count of requests served in a fixed time, a bound on seconds.
Without xdist (a plain ``pytest``) the marker changes nothing.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest

try:
    import fcntl
except ImportError:  # Windows: no xdist run of this suite there
    fcntl = None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    workerinput = getattr(item.config, "workerinput", None)  # set in xdist's workers only
    if workerinput is None or fcntl is None:
        yield
        return
    folder = Path(tempfile.gettempdir()) / "tskd-pytest-turns-{}".format(workerinput["testrunuid"])
    folder.mkdir(exist_ok=True)
    alone = item.get_closest_marker("serial") is not None
    wanted = folder / "wanted-{}".format(workerinput["workerid"])
    with open(folder / "turns.lock", "a") as lock:
        if alone:
            wanted.touch()  # the other worker starts no new test from now on
            fcntl.flock(lock, fcntl.LOCK_EX)  # and this one waits for the test it is running
        else:
            while any(folder.glob("wanted-*")):
                time.sleep(0.2)
            fcntl.flock(lock, fcntl.LOCK_SH)
        try:
            yield
        finally:
            if alone:
                wanted.unlink()
            fcntl.flock(lock, fcntl.LOCK_UN)
