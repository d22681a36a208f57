"""Every kind of bad upload is refused with a 4xx that says what is wrong, and leaves nothing behind.

Each test compares the workspace's files before and after the refused request: no temporary
upload, no half-moved case, no database row (the case list stays as it was).
"""

from __future__ import annotations

import gzip
import http.client
import json
import uuid
from pathlib import Path

import numpy as np
import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import PHANTOM, workspace_files
from tskd.data.image import Geometry, Image, write_image
from tskd.data.phantom import make_phantom


@pytest.fixture
def setup(server, project, phantom_files):
    """A project with one case; returns (client, project id, files before the test)."""
    client = server.client()
    client.upload_case(project["id"], "first", str(phantom_files["case_000"][0]), str(phantom_files["case_000"][1]))
    return client, project["id"], workspace_files(server.workspace)


def refused(server, setup, call, status: int, *phrases: str) -> str:
    """Run ``call``, check the refusal and that the workspace is exactly as before."""
    client, project_id, before = setup
    with pytest.raises(TSKDClientError) as err:
        call()
    assert err.value.status == status, err.value
    for phrase in phrases:
        assert phrase in err.value.message, err.value.message
    assert workspace_files(server.workspace) == before
    assert list((server.workspace / "tmp").iterdir()) == []
    assert [c["name"] for c in client.list_cases(project_id)] == ["first"]
    return err.value.message


def raw_post(server, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST arbitrary bytes (what the client would never send)."""
    conn = http.client.HTTPConnection(server.url.split("//")[1], timeout=30)
    conn.request("POST", "/api/v1" + path, body=body, headers=headers)
    response = conn.getresponse()
    text = json.loads(response.read())["detail"]
    conn.close()
    return response.status, text


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary", close: bool = True) -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + (f"--{boundary}--\r\n".encode() if close else b"")


def raw_refused(server, setup, body: bytes, status: int, *phrases: str, content_type: str | None = None) -> None:
    _, project_id, before = setup
    headers = {"Content-Type": content_type or "multipart/form-data; boundary=b0undary"}
    code, message = raw_post(server, f"/projects/{project_id}/cases", body, headers)
    assert code == status, message
    for phrase in phrases:
        assert phrase in message, message
    assert workspace_files(server.workspace) == before
    assert list((server.workspace / "tmp").iterdir()) == []


def test_corrupt_image(server, setup, tmp_path):
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"this is not an image" * 100)
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(bad)), 422,
            "'image' file 'broken.nii.gz'", "cannot be read as an image")


def test_truncated_image(server, setup, phantom_files, tmp_path):
    data = gzip.decompress(phantom_files["case_001"][0].read_bytes())
    bad = tmp_path / "cut.nii.gz"
    bad.write_bytes(gzip.compress(data[: len(data) // 2]))
    message = refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(bad)), 422, "'cut.nii.gz'", "truncated")
    assert str(server.workspace) not in message  # the temporary path is not shown


def test_4d_image(server, setup, tmp_path):
    import SimpleITK as sitk

    volume = sitk.JoinSeries([sitk.Image([8, 8, 8], sitk.sitkFloat32)] * 2)
    path = tmp_path / "series.nii.gz"
    sitk.WriteImage(volume, str(path))
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(path)), 422, "4D image with 2 volumes")


def test_label_of_another_size(server, setup, phantom_files, tmp_path):
    image, label = make_phantom(PHANTOM, 1)
    small = write_image(Image(label.array[:, :16, :], Geometry.default((8, 16, 32), (1.0, 1.0, 2.5))),
                        tmp_path / "small.nii.gz")
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(phantom_files["case_001"][0]), str(small)),
            422, "'label' file 'small.nii.gz'", "does not overlay its image", "size (32, 16, 8) differs from (32, 32, 8)")


def test_label_with_other_spacing(server, setup, phantom_files, tmp_path):
    image, label = make_phantom(PHANTOM, 1)
    other = Geometry(image.geometry.size, (1.0, 1.0, 3.0), image.geometry.origin, image.geometry.direction)
    path = write_image(Image(label.array, other), tmp_path / "spacing.nii.gz")
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(phantom_files["case_001"][0]), str(path)),
            422, "does not overlay its image", "spacing (1, 1, 3) differs from (1, 1, 2.5)")


def test_label_values_not_declared(server, setup, phantom_files, tmp_path):
    image, label = make_phantom(PHANTOM, 1)
    array = label.array.copy()
    array[0, 0, :4] = 5
    path = write_image(Image(array, label.geometry), tmp_path / "extra.nii.gz")
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(phantom_files["case_001"][0]), str(path)),
            422, "uses label values [5] that the project does not declare", "0 background, 1 organ_a, 2 organ_b")


def test_label_with_fractions(server, setup, phantom_files, tmp_path):
    image, label = make_phantom(PHANTOM, 1)
    path = write_image(Image(label.array.astype(np.float32) * 0.5, label.geometry), tmp_path / "blurred.nii.gz")
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(phantom_files["case_001"][0]), str(path)),
            422, "non-integer values")


def test_empty_body(server, setup):
    raw_refused(server, setup, b"", 400, "the request body is empty")


def test_not_multipart(server, setup):
    raw_refused(server, setup, b'{"name": "x"}', 415, "multipart/form-data", content_type="application/json")


def test_empty_file(server, setup, tmp_path):
    empty = tmp_path / "empty.nii.gz"
    empty.write_bytes(b"")
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(empty)), 400, "'empty.nii.gz' is empty (0 bytes)")


def test_file_over_the_limit(make_server, tmp_path):
    server = make_server(max_upload_mb=0.25)
    client = server.client()
    project = client.create_project("p", [{"value": 1, "name": "a"}])
    noise = np.random.default_rng(0).random((16, 96, 96), dtype=np.float32)  # ~0.5 MiB that gzip cannot shrink
    big = write_image(Image(noise, Geometry.default(noise.shape)), tmp_path / "big.nii.gz")
    assert big.stat().st_size > 0.25 * 1024 * 1024
    before = workspace_files(server.workspace)
    with pytest.raises(TSKDClientError) as err:
        client.upload_case(project["id"], "big", str(big))
    assert err.value.status == 413
    assert "'big.nii.gz' is larger than the server's limit of 0.25 MB" in err.value.message
    assert workspace_files(server.workspace) == before
    assert client.list_cases(project["id"]) == []


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "..", "sub/dir"])
def test_case_name_with_parent_folder(server, setup, phantom_files, name):
    refused(server, setup, lambda: setup[0].upload_case(setup[1], name, str(phantom_files["case_001"][0])), 400,
            f"case name {name!r} is not allowed")


def test_case_name_absolute_path(server, setup, phantom_files):
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "/etc/passwd", str(phantom_files["case_001"][0])),
            400, "case name '/etc/passwd' is not allowed")


@pytest.mark.parametrize("name", ["a b", "x;rm", "caf\u00e9", "-dash", "x" * 65, "a\\b", ".hidden"])
def test_case_name_unsafe_characters(server, setup, phantom_files, name):
    refused(server, setup, lambda: setup[0].upload_case(setup[1], name, str(phantom_files["case_001"][0])), 400,
            "is not allowed", "letters, digits")


@pytest.mark.parametrize("filename", ["../../evil.nii.gz", "/tmp/evil.nii.gz", "..\\evil.nii.gz"])
def test_file_name_with_path(server, setup, phantom_files, filename):
    data = phantom_files["case_001"][0].read_bytes()
    body = multipart([("name", None, b"x"), ("image", filename, data)])
    raw_refused(server, setup, body, 400, "is not allowed", "bare file name")


def test_file_name_unsafe_characters(server, setup, phantom_files):
    data = phantom_files["case_001"][0].read_bytes()
    body = multipart([("name", None, b"x"), ("image", "x;$(rm).nii.gz", data)])
    raw_refused(server, setup, body, 400, "unsupported characters")


def test_file_type_not_an_image(server, setup, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello", encoding="utf-8")
    refused(server, setup, lambda: setup[0].upload_case(setup[1], "x", str(text)), 415,
            "'notes.txt' is not a supported image file", ".nii.gz")


def test_missing_image_field(server, setup):
    raw_refused(server, setup, multipart([("name", None, b"x")]), 400, "'image' is missing")


def test_missing_name_field(server, setup, phantom_files):
    body = multipart([("image", "a.nii.gz", phantom_files["case_001"][0].read_bytes())])
    raw_refused(server, setup, body, 400, "'name' is missing")


def test_unexpected_field(server, setup):
    raw_refused(server, setup, multipart([("name", None, b"x"), ("comment", None, b"hi")]), 400,
                "unexpected form field 'comment'")


def test_incomplete_multipart_body(server, setup, phantom_files):
    body = multipart([("name", None, b"x"), ("image", "a.nii.gz", phantom_files["case_001"][0].read_bytes())], close=False)
    raw_refused(server, setup, body, 400, "incomplete")


def test_unknown_project(server, setup, phantom_files):
    _, _, before = setup
    with pytest.raises(TSKDClientError) as err:
        setup[0].upload_case(uuid.uuid4().hex[:12], "x", str(phantom_files["case_001"][0]))
    assert err.value.status == 404 and "no project" in err.value.message
    assert workspace_files(server.workspace) == before


def test_leftovers_of_a_crash_are_removed_at_start(make_server, tmp_path: Path, phantom_files):
    server = make_server()
    client = server.client()
    project = client.create_project("p", [{"value": 1, "name": "a"}, {"value": 2, "name": "b"}])
    client.upload_case(project["id"], "kept", str(phantom_files["case_000"][0]), str(phantom_files["case_000"][1]))
    server.stop()
    dataset = server.workspace / "projects" / project["id"] / "dataset"
    before = workspace_files(server.workspace)
    # what a crash in the middle of an upload would leave: a temporary folder, a file without a row
    (server.workspace / "tmp" / "upload-123").mkdir()
    (server.workspace / "tmp" / "upload-123" / "image.nii.gz").write_bytes(b"partial")
    (dataset / "images" / "orphan.nii.gz").write_bytes(b"moved, but never recorded")
    (server.workspace / "projects" / "0123456789ab").mkdir()
    restarted = make_server()
    assert workspace_files(restarted.workspace) == before
    assert [c["name"] for c in restarted.client().list_cases(project["id"])] == ["kept"]
