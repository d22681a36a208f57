"""Two processes sharing one weights cache download the same file (issue 34, item 4): one writes the
``.part`` file, the other waits and then finds the file done; the file is whole and verified, it
was sent once. A holder killed with SIGKILL leaves no stale lock."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.foundation.loopback import wait_until
from tskd.foundation.partlock import lock_path, part_lock

SRC = Path(__file__).resolve().parents[2] / "src"
DATA = os.urandom(1 << 20)

DOWNLOADER = textwrap.dedent("""
    import sys
    from tskd.foundation.download import Expected, download_file
    sha, size = download_file(sys.argv[1], sys.argv[2], expected=Expected(size=int(sys.argv[3]), sha256=sys.argv[4]),
                              retries=0, timeout_s=10)
    print(sha, size)
""")


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}


def test_two_processes_download_one_file_once(server, tmp_path):
    server.files["/w.pth"] = DATA
    server.slow["/w.pth"] = 0.03  # 16 pieces of 64 KiB: about half a second
    dest = tmp_path / "cache" / "w.pth"
    sha = hashlib.sha256(DATA).hexdigest()
    args = [f"{server.url}/w.pth", str(dest), str(len(DATA)), sha]
    procs = [subprocess.Popen([sys.executable, "-c", DOWNLOADER, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=_env()) for _ in range(2)]
    outputs = [proc.communicate(timeout=60) for proc in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert out.split() == [sha, str(len(DATA))]
    assert dest.read_bytes() == DATA
    assert [path for path, _ in server.requests] == ["/w.pth"]  # sent once: the second process waited
    assert sorted(p.name for p in dest.parent.iterdir()) == ["w.pth"]  # no .part, no lock file left


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    part = tmp_path / ".w.pth.part"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from tskd.foundation.partlock import part_lock
        with part_lock({str(part)!r}):
            print("held", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True, env=_env())
    assert holder.stdout.readline().strip() == "held"
    stop = {"now": False}
    started = time.monotonic()
    try:
        with part_lock(part, should_stop=lambda: stop["now"] or time.monotonic() - started > 0.5):
            raise AssertionError("the lock was taken while another process held it")
    except Exception as exc:  # CancelledError: we waited, then gave up
        assert "waiting for another process" in str(exc), exc
    holder.send_signal(signal.SIGKILL)
    holder.wait(10)
    assert wait_until(lambda: _take(part), 5), "the SIGKILLed holder's lock was not released"
    assert not lock_path(part).exists()


def _take(part: Path) -> bool:
    with part_lock(part, should_stop=lambda: True) as waited:
        return not waited
