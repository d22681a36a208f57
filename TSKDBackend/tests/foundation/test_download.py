"""One file over HTTP (loopback): resume after a cut, verification before the rename, clear errors."""

from __future__ import annotations

import hashlib
import time

import pytest

from tskd.errors import CheckpointError, DownloadError
from tskd.foundation.download import Expected, download_file

DATA = bytes(range(256)) * 4096  # 1 MiB: several chunks


def _expected(data=DATA):
    return Expected(size=len(data), sha256=hashlib.sha256(data).hexdigest(), md5=hashlib.md5(data).hexdigest())


def test_download_cut_half_way_resumes_with_range_and_verifies(server, tmp_path):
    server.files["/w.pth"] = DATA
    server.cut_first.add("/w.pth")
    dest = tmp_path / "w.pth"
    sha, size = download_file(f"{server.url}/w.pth", dest, expected=_expected(), retries=2, backoff_s=0, timeout_s=5)
    assert dest.read_bytes() == DATA and (sha, size) == (hashlib.sha256(DATA).hexdigest(), len(DATA))
    assert [r for _, r in server.requests] == [None, f"bytes={len(DATA) // 2}-"]  # the second request resumed
    assert not list(tmp_path.glob(".*part"))


def test_interrupted_download_keeps_part_and_next_call_resumes(server, tmp_path):
    server.files["/w.pth"] = DATA
    server.cut_first.add("/w.pth")
    dest = tmp_path / "w.pth"
    with pytest.raises(DownloadError, match="run the same command again to resume"):
        download_file(f"{server.url}/w.pth", dest, expected=_expected(), retries=0, timeout_s=5)
    part = tmp_path / ".w.pth.part"
    assert not dest.exists() and part.stat().st_size == len(DATA) // 2  # nothing under the final name
    download_file(f"{server.url}/w.pth", dest, expected=_expected(), retries=0, timeout_s=5)
    assert dest.read_bytes() == DATA and not part.exists()
    assert server.requests[-1][1] == f"bytes={len(DATA) // 2}-"


def test_server_without_range_support_restarts_from_zero(server, tmp_path):
    server.files["/w.pth"] = DATA
    server.no_range = True
    (tmp_path / ".w.pth.part").write_bytes(DATA[:1000])
    download_file(f"{server.url}/w.pth", tmp_path / "w.pth", expected=_expected(), retries=0, timeout_s=5)
    assert (tmp_path / "w.pth").read_bytes() == DATA


def test_wrong_hash_is_refused_and_leaves_nothing(server, tmp_path):
    server.files["/w.pth"] = DATA
    dest = tmp_path / "w.pth"
    wrong = Expected(size=len(DATA), sha256="0" * 64)
    with pytest.raises(CheckpointError, match=r"SHA-256 [0-9a-f]{64} instead of 0{64}.*deleted"):
        download_file(f"{server.url}/w.pth", dest, expected=wrong, retries=0, timeout_s=5)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_offered_is_refused_before_writing(server, tmp_path):
    server.files["/w.pth"] = DATA
    with pytest.raises(DownloadError, match=f"offers {len(DATA)} bytes but the file must have 123"):
        download_file(f"{server.url}/w.pth", tmp_path / "w.pth", expected=Expected(size=123), retries=0)
    assert not (tmp_path / "w.pth").exists()


def test_404_is_a_clear_error_without_retries(server, tmp_path):
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"/missing.pth: not found \(HTTP 404\).*mirror"):
        download_file(f"{server.url}/missing.pth", tmp_path / "m.pth", retries=5, backoff_s=10)
    assert time.monotonic() - start < 5  # no back-off on a 404
    assert len(server.requests) == 1 and not list(tmp_path.iterdir())


def test_stalled_server_times_out_with_a_clear_error(server, tmp_path):
    server.files["/w.pth"] = DATA
    server.stall.add("/w.pth")
    start = time.monotonic()
    with pytest.raises(DownloadError, match=r"gave up after 2 attempts \(no data for 0.5 s after \d+ bytes\)"):
        download_file(f"{server.url}/w.pth", tmp_path / "w.pth", expected=_expected(), retries=1, backoff_s=0,
                      timeout_s=0.5)
    assert time.monotonic() - start < 10
    assert not (tmp_path / "w.pth").exists()


def test_html_page_from_a_proxy_is_refused(server, tmp_path):
    server.html.add("/w.pth")
    with pytest.raises(DownloadError, match="HTML page"):
        download_file(f"{server.url}/w.pth", tmp_path / "w.pth", retries=0)
    assert not (tmp_path / "w.pth").exists()


def test_connection_refused_is_retried_then_reported(tmp_path):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match=r"gave up after 2 attempts \(cannot connect"):
        download_file(f"http://127.0.0.1:{port}/w.pth", tmp_path / "w.pth", retries=1, backoff_s=0, timeout_s=2)


def test_full_disk_is_reported_and_the_part_kept(server, tmp_path, monkeypatch):
    import builtins
    import errno

    big = DATA * 3  # several 1 MiB chunks: the second write finds the disk full
    server.files["/w.pth"] = big
    real_open = builtins.open

    class FullDisk:
        def __init__(self, handle):
            self.handle, self.written = handle, 0

        def write(self, chunk):
            if self.written:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(chunk)
            return self.handle.write(chunk)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

    def fake_open(path, mode="r", *args, **kwargs):
        handle = real_open(path, mode, *args, **kwargs)
        return FullDisk(handle) if str(path).endswith(".part") and "b" in mode and "r" not in mode else handle

    monkeypatch.setattr(builtins, "open", fake_open)
    with pytest.raises(DownloadError, match=r"disk full while writing .*\.part.*TSKD_HOME"):
        download_file(f"{server.url}/w.pth", tmp_path / "w.pth", expected=_expected(big), retries=3)
    assert not (tmp_path / "w.pth").exists() and (tmp_path / ".w.pth.part").stat().st_size > 0
    assert len(server.requests) == 1  # a full disk is not retried


def test_cancel_keeps_the_part_for_resuming(server, tmp_path):
    from tskd.errors import CancelledError

    server.files["/w.pth"] = DATA
    calls = []
    with pytest.raises(CancelledError):
        download_file(f"{server.url}/w.pth", tmp_path / "w.pth", expected=_expected(),
                      should_stop=lambda: calls.append(1) or len(calls) > 1)
    assert not (tmp_path / "w.pth").exists() and (tmp_path / ".w.pth.part").exists()
