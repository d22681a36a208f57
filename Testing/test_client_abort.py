"""Transfers stop when the module closes or the user cancels (issue 14, items 2 and 8), against a
real ``tskd serve`` on loopback."""

from __future__ import annotations

import os

import pytest

from SlicerTSKDLib.backend.client import TSKDTransferAborted


def test_an_upload_stops_at_the_next_chunk_when_cancelled(localBackend, tmp_path):
    client = localBackend.client()
    project = client.create_project("abort", [{"value": 1, "name": "a", "color": [1.0, 0.0, 0.0]}])
    big = tmp_path / "big.nii.gz"
    big.write_bytes(os.urandom(6 << 20))  # six 1 MiB chunks
    checks = []

    def cancel():
        checks.append(1)
        return len(checks) > 3  # after a few chunks were sent

    with pytest.raises(TSKDTransferAborted, match="upload was cancelled"):
        client._request("POST", "/projects/{}/cases".format(project["id"]), timeout=30,
                        form=_form(big), cancel=cancel)
    assert len(checks) == 4
    assert client.list_cases(project["id"]) == []  # the server kept nothing and still answers


def test_abort_stops_downloads_and_refuses_new_calls(localBackend, tmp_path):
    client = localBackend.client()
    assert client.health()["status"] == "ok"
    client.abort()
    with pytest.raises(TSKDTransferAborted):
        client.download_model("anything", str(tmp_path / "model.zip"))
    with pytest.raises(TSKDTransferAborted):
        client.health()
    assert not (tmp_path / "model.zip").exists()
    assert localBackend.client().health()["status"] == "ok"  # another client is not affected


def test_a_download_stops_between_chunks(tmp_path):
    from SlicerTSKDLib.backend.client import TSKDClient

    class Response:
        def __init__(self):
            self.reads = 0

        def read(self, size):
            self.reads += 1
            return b"x" * size

    response, calls = Response(), []
    with pytest.raises(TSKDTransferAborted, match="download of out.bin was cancelled"):
        TSKDClient._save(response, str(tmp_path / "out.bin"), lambda: calls.append(1) or len(calls) > 2)
    assert response.reads == 2 and os.listdir(tmp_path) == []  # no partial file left


def _form(path):
    from SlicerTSKDLib.backend.client import _MultipartBody

    return _MultipartBody([("name", "case_000"), ("replace", "false")], [("image", str(path))])
