"""What an outside reliability probe found (issue 15), each refused now: decompression bombs (a
header declaring a huge volume in a tiny file), headers that point the server at its own files,
NaN in NIfTI images, web pages of other sites calling a loopback server (Host, Origin), stalled
uploads, the ``Bearer`` scheme's letter case, parser internals in messages, and a resumed job
showing the previous attempt's progress.

Every refused upload leaves the workspace as it was (no case, no temporary file).
"""

from __future__ import annotations

import gzip
import http.client
import json
import resource
import socket
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import add_cases, project_labels, wait_state, workspace_files
from tskd.data.image import Geometry, Image, write_image

TOKEN = "correct-horse-battery-staple"


# -- helpers ------------------------------------------------------------------------------------
def nifti_header(dims: tuple[int, ...], datatype: int = 2, bitpix: int = 8) -> bytes:
    """A NIfTI-1 header (and its 4-byte extension flag) for ``dims`` voxels of ``datatype``."""
    header = bytearray(348)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    struct.pack_into("<hh", header, 70, datatype, bitpix)
    struct.pack_into("<8f", header, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)
    struct.pack_into("<f", header, 108, 352.0)  # vox_offset
    struct.pack_into("<f", header, 112, 1.0)  # scl_slope
    header[344:348] = b"n+1\0"
    return bytes(header) + b"\0" * 4


def zeros_gzip(header: bytes, zero_mib: int) -> bytes:
    """``header`` then ``zero_mib`` MiB of zeros, gzipped (one member per MiB: fast to make, ~1 KB each)."""
    member = gzip.compress(b"\0" * (1 << 20), compresslevel=9)
    return gzip.compress(header) + member * zero_mib


def raw(url: str, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection(url.split("//")[1], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def multipart(parts: list[tuple[str, str | None, bytes]], boundary: str = "b0undary") -> bytes:
    out = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


@pytest.fixture
def setup(server, project, phantom_files):
    """A project with one case; returns (client, project id, files before the test)."""
    client = server.client()
    client.upload_case(project["id"], "first", str(phantom_files["case_000"][0]), str(phantom_files["case_000"][1]))
    return client, project["id"], workspace_files(server.workspace)


def refused(server, setup, image: Path, status: int, *phrases: str, label: Path | None = None) -> str:
    client, project_id, before = setup
    with pytest.raises(TSKDClientError) as err:
        client.upload_case(project_id, "x", str(image), str(label) if label else None)
    assert err.value.status == status, err.value
    for phrase in phrases:
        assert phrase in err.value.message, err.value.message
    assert workspace_files(server.workspace) == before
    assert list((server.workspace / "tmp").iterdir()) == []
    assert [c["name"] for c in client.list_cases(project_id)] == ["first"]
    return err.value.message


# -- 1. decompression bombs: the header is checked before any pixel is decoded -------------------
def test_the_probes_bomb_is_refused_before_decoding(server, setup, tmp_path):
    """The probe's file: 917 KB of .nii.gz holding 1024 x 1024 x 900 zeros (900 MiB decoded)."""
    bomb = tmp_path / "bomb.nii.gz"
    bomb.write_bytes(zeros_gzip(nifti_header((1024, 1024, 900)), 900))
    assert bomb.stat().st_size < 1_200_000
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux; the server is in-process
    message = refused(server, setup, bomb, 413, "'image' file 'bomb.nii.gz' declares 1024 x 1024 x 900 voxels of "
                      "8-bit unsigned integer", "900 MiB", "limit of 1,536 MiB per image", "--max-image-mb")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    assert grown_mib < 300, f"the server's memory grew by {grown_mib:.0f} MiB: the pixels were decoded ({message})"


@pytest.mark.parametrize("fmt", ["nii.gz", "nii", "nrrd", "mha", "png"])
def test_a_header_declaring_a_huge_volume_is_refused(server, setup, tmp_path, fmt):
    """Terabytes declared in a few bytes, in each accepted format family (nothing is allocated)."""
    path = tmp_path / f"huge.{fmt}"
    if fmt in ("nii.gz", "nii"):
        data = nifti_header((30000, 30000, 2000)) + b"\0" * 64
        path.write_bytes(gzip.compress(data) if fmt == "nii.gz" else data)
        declared = "30000 x 30000 x 2000 voxels of 8-bit unsigned integer"
    elif fmt == "nrrd":
        path.write_bytes(b"NRRD0004\ntype: int16\ndimension: 3\nsizes: 30000 30000 2000\nendian: little\nencoding: gzip\n\n"
                         + gzip.compress(b"\0" * 64))
        declared = "30000 x 30000 x 2000 voxels of 16-bit signed integer"
    elif fmt == "mha":
        path.write_bytes(b"ObjectType = Image\nNDims = 3\nDimSize = 30000 30000 2000\nElementType = MET_FLOAT\n"
                         b"CompressedData = True\nElementDataFile = LOCAL\n" + zlib.compress(b"\0" * 64))
        declared = "30000 x 30000 x 2000 voxels of 32-bit float"
    else:
        ihdr = struct.pack(">IIBBBBB", 200000, 200000, 8, 2, 0, 0, 0)  # 200000 x 200000 RGB

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                         + chunk(b"IEND", b""))
        declared = "200000 x 200000 voxels of 3 x 8-bit unsigned integer"
    refused(server, setup, path, 413, f"'huge.{fmt}' declares {declared}", "limit of 1,536 MiB", "--max-image-mb")


def test_a_label_declaring_a_huge_volume_is_refused(server, setup, phantom_files, tmp_path):
    label = tmp_path / "huge-label.nii.gz"
    label.write_bytes(gzip.compress(nifti_header((30000, 30000, 2000)) + b"\0" * 64))
    refused(server, setup, phantom_files["case_001"][0], 413, "'label' file 'huge-label.nii.gz' declares", "--max-image-mb",
            label=label)


def test_the_decoded_limit_is_configurable(make_server, phantom_files):
    server = make_server(max_image_mb=0.01)  # 10 KiB; the phantom image is 32 x 32 x 8 float32 = 32 KiB
    client = server.client()
    assert client.info()["limits"]["max_image_mb"] == 0.01
    project = client.create_project("p", project_labels())
    with pytest.raises(TSKDClientError) as err:
        client.upload_case(project["id"], "x", str(phantom_files["case_000"][0]))
    assert err.value.status == 413
    assert "would decode to 0.0312 MiB; checking it would take about 0.0719 MiB of memory: more than the server's limit of 0.01 MiB" in err.value.message
    assert client.list_cases(project["id"]) == []
    roomy = make_server(workspace=server.workspace.parent / "ws2", max_image_mb=1)
    project = roomy.client().create_project("p", project_labels())
    assert roomy.client().upload_case(project["id"], "x", str(phantom_files["case_000"][0]))["name"] == "x"


# -- headers that make the server read one of its own files as the pixels -----------------------
@pytest.mark.parametrize("fmt", ["nrrd", "seg.nrrd", "mha"])
def test_a_header_pointing_at_a_server_file_is_refused(server, setup, tmp_path, fmt):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes(range(64)))  # a file of the server's disk
    path = tmp_path / f"pointer.{fmt}"
    if fmt == "mha":
        path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_UCHAR\n"
                        f"ElementDataFile = {secret}\n", encoding="utf-8")
    else:
        path.write_text(f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 4 4 4\nencoding: raw\ndata file: {secret}\n\n",
                        encoding="utf-8")
    refused(server, setup, path, 422, f"'pointer.{fmt}' has a header that points at a separate data file",
            str(secret))


def test_a_label_pointing_at_a_server_file_is_refused(server, setup, phantom_files, tmp_path):
    secret = tmp_path / "secret.raw"
    secret.write_bytes(bytes(32 * 32 * 8))
    label = tmp_path / "pointer.nrrd"
    label.write_text(f"NRRD0004\ntype: uint8\ndimension: 3\nsizes: 32 32 8\nspacings: 1 1 2.5\nencoding: raw\n"
                     f"data file: {secret}\n\n", encoding="utf-8")
    refused(server, setup, phantom_files["case_001"][0], 422, "'label' file 'pointer.nrrd' has a header that points",
            label=label)


# -- 3. NaN in NIfTI: ITK reads it as 0, so the raw values are checked --------------------------
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_values_are_refused_in_every_format(server, setup, tmp_path, suffix, bad):
    array = np.random.default_rng(0).random((8, 32, 32)).astype(np.float32)
    array[3, 4, 5] = bad
    path = write_image(Image(array, Geometry.default(array.shape)), tmp_path / f"holes{suffix}")
    refused(server, setup, path, 422, f"'holes{suffix}' contains NaN or infinite values")


def test_nan_in_a_float64_big_endian_nifti_is_refused(server, setup, tmp_path):
    header = bytearray(nifti_header((16, 16, 4), datatype=64, bitpix=64))
    struct.pack_into(">i", header, 0, 348)  # rewrite the fields read here as big-endian
    struct.pack_into(">8h", header, 40, 3, 16, 16, 4, 1, 1, 1, 1)
    struct.pack_into(">hh", header, 70, 64, 64)
    struct.pack_into(">8f", header, 76, 1.0, 1.0, 1.0, 1.0, 0, 0, 0, 0)
    struct.pack_into(">f", header, 108, 352.0)
    struct.pack_into(">f", header, 112, 1.0)
    values = np.ones(16 * 16 * 4, dtype=">f8")
    values[-1] = np.nan
    path = tmp_path / "big-endian.nii.gz"
    path.write_bytes(gzip.compress(bytes(header) + values.tobytes()))
    refused(server, setup, path, 422, "'big-endian.nii.gz' contains NaN or infinite values")


def test_nan_in_a_nifti_label_is_refused(server, setup, phantom_files, tmp_path):
    from tskd.data.image import read_image

    label = read_image(phantom_files["case_001"][1], kind="label")
    array = label.array.astype(np.float32)
    array[0, 0, 0] = np.nan
    path = write_image(Image(array, label.geometry), tmp_path / "holes-label.nii.gz")
    refused(server, setup, phantom_files["case_001"][0], 422, "'label' file 'holes-label.nii.gz' contains NaN",
            label=path)


def test_a_finite_float_nifti_is_still_accepted(server, setup, tmp_path):
    array = np.random.default_rng(1).standard_normal((8, 32, 32)).astype(np.float32)
    path = write_image(Image(array, Geometry.default(array.shape)), tmp_path / "fine.nii.gz")
    client, project_id, _ = setup
    assert client.upload_case(project_id, "fine", str(path))["name"] == "fine"


# -- 2. other websites calling the loopback server ----------------------------------------------
def test_a_foreign_host_name_is_refused(server):
    port = server.url.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1.evil.example:{port}", f"localhost.evil:{port}",
                 "192.168.1.5", "[::1", "a:b:c"):
        status, headers, body = raw(server.url, "GET", "/api/v1/projects", {"Host": host})
        assert status == 421, (host, status, body)
        detail = json.loads(body)["detail"]
        assert "answers only requests addressed to localhost, 127.0.0.1 or [::1]" in detail, detail
        assert repr(host) in detail and "--host and --token" in detail
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}", "127.0.0.1", "localhost."):
        status, _, body = raw(server.url, "GET", "/api/v1/projects", {"Host": host})
        assert status == 200, (host, status, body)


def test_a_dns_rebinding_page_cannot_upload_or_read(server, setup, phantom_files):
    """A page at http://evil.example:PORT whose name resolves to 127.0.0.1 sends its own Host."""
    _, project_id, before = setup
    port = server.url.rsplit(":", 1)[1]
    body = multipart([("name", None, b"planted"), ("image", "a.nii.gz", phantom_files["case_001"][0].read_bytes())])
    status, _, answer = raw(server.url, "POST", f"/api/v1/projects/{project_id}/cases", body=body, headers={
        "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}",
        "Content-Type": "multipart/form-data; boundary=b0undary"})
    assert status == 421, answer
    assert workspace_files(server.workspace) == before


def test_a_cross_origin_upload_is_refused(server, setup, phantom_files):
    """What a form on another site's page sends: the server's own Host, the page's Origin."""
    client, project_id, before = setup
    body = multipart([("name", None, b"planted"), ("image", "a.nii.gz", phantom_files["case_001"][0].read_bytes())])
    port = server.url.rsplit(":", 1)[1]
    for origin in ("http://evil.example", "null", f"http://localhost:{int(port) + 1}", f"https://127.0.0.1:{port}",
                   "http://127.0.0.1", "garbage"):
        status, headers, answer = raw(server.url, "POST", f"/api/v1/projects/{project_id}/cases", body=body,
                                      headers={"Origin": origin, "Content-Type": "multipart/form-data; boundary=b0undary"})
        assert status == 403, (origin, status, answer)
        assert "requests from web pages of other sites are refused" in json.loads(answer)["detail"]
        assert "access-control-allow-origin" not in {k.lower() for k in headers}
    assert workspace_files(server.workspace) == before
    assert [c["name"] for c in client.list_cases(project_id)] == ["first"]
    # the server's own pages (/docs) are same-origin: allowed, under any loopback name
    for host, origin in ((f"127.0.0.1:{port}", f"http://127.0.0.1:{port}"), (f"localhost:{port}", f"http://localhost:{port}"),
                         (f"[::1]:{port}", f"http://[::1]:{port}")):
        status, _, answer = raw(server.url, "GET", "/api/v1/projects", {"Host": host, "Origin": origin})
        assert status == 200, (origin, answer)


def test_the_checks_hold_with_a_token_too(make_server):
    server = make_server(token=TOKEN)
    status, _, _ = raw(server.url, "GET", "/api/v1/health", {"Host": "evil.example"})
    assert status == 421
    status, _, _ = raw(server.url, "GET", "/api/v1/projects",
                       {"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"})
    assert status == 403


def test_a_server_beyond_loopback_checks_the_token_not_the_host(tmp_path):
    """Listening on every address needs a token, and clients use the machine's own names there."""
    from types import SimpleNamespace

    from tskd.service.app import create_app
    from tskd.service.localonly import LocalOnlyMiddleware
    from tskd.service.settings import ServiceSettings

    def checks(host: str) -> bool:
        settings = ServiceSettings(workspace=tmp_path / "never-created", host=host, token=TOKEN)
        return any(m.cls is LocalOnlyMiddleware for m in create_app(SimpleNamespace(settings=settings)).user_middleware)

    assert checks("127.0.0.1") and checks("localhost") and checks("::1")
    assert not checks("0.0.0.0") and not checks("192.168.1.5")


# -- 4. stalled uploads -------------------------------------------------------------------------
def test_a_stalled_upload_is_abandoned_and_its_partial_file_removed(make_server, phantom_files):
    server = make_server(body_timeout_s=1.0)
    client = server.client()
    project = client.create_project("p", project_labels())
    before = workspace_files(server.workspace)
    data = phantom_files["case_000"][0].read_bytes()
    body = multipart([("name", None, b"stall"), ("image", "a.nii.gz", data)])
    head = (f"POST /api/v1/projects/{project['id']}/cases HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {len(body)}\r\n\r\n").encode()
    sock = socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1])), timeout=30)
    try:
        sock.sendall(head + body[: len(body) // 2])  # then nothing, connection kept open
        time.sleep(0.3)
        assert [p.name for p in (server.workspace / "tmp").iterdir()], "the upload should be in progress"
        started = time.monotonic()
        answer = b""
        while chunk := sock.recv(65536):  # the server answers, then closes the connection
            answer += chunk
        waited = time.monotonic() - started
    finally:
        sock.close()
    status_line, _, rest = answer.partition(b"\r\n")
    assert status_line.startswith(b"HTTP/1.1 408"), answer
    detail = json.loads(rest.split(b"\r\n\r\n", 1)[1])["detail"]
    assert "the upload stalled: nothing arrived for 1 s" in detail and "--body-timeout-s" in detail
    assert waited < 15
    assert list((server.workspace / "tmp").iterdir()) == []
    assert workspace_files(server.workspace) == before
    assert client.list_cases(project["id"]) == []


def test_a_slow_but_steady_upload_is_not_cut(make_server, phantom_files):
    server = make_server(body_timeout_s=1.0)
    client = server.client()
    project = client.create_project("p", project_labels())
    body = multipart([("name", None, b"slow"), ("image", "a.nii.gz", phantom_files["case_000"][0].read_bytes())])
    conn = http.client.HTTPConnection(server.url.split("//")[1], timeout=30)
    conn.putrequest("POST", f"/api/v1/projects/{project['id']}/cases")
    conn.putheader("Content-Type", "multipart/form-data; boundary=b0undary")
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders()
    step = len(body) // 5 + 1
    for start in range(0, len(body), step):  # 2.5 s in all, never 1 s without data
        conn.send(body[start:start + step])
        time.sleep(0.5)
    response = conn.getresponse()
    assert response.status == 201, response.read()
    conn.close()
    assert [c["name"] for c in client.list_cases(project["id"])] == ["slow"]


# -- 5. small ones ------------------------------------------------------------------------------
def test_the_bearer_scheme_is_case_insensitive(make_server):
    server = make_server(token=TOKEN)
    for scheme in ("Bearer", "bearer", "BEARER", "bEaReR"):
        status, _, body = raw(server.url, "GET", "/api/v1/projects", {"Authorization": f"{scheme} {TOKEN}"})
        assert status == 200, (scheme, body)
    for value in (f"bearer {TOKEN}x", f"Basic {TOKEN}", TOKEN, f"Bearer{TOKEN}", "bearer", f"bearerx {TOKEN}"):
        status, _, body = raw(server.url, "GET", "/api/v1/projects", {"Authorization": value})
        assert status == 401 and body == b'{"detail": "unauthorized", "code": "unauthorized"}', value


def test_a_malformed_multipart_body_gets_a_plain_message(server, setup):
    _, project_id, before = setup
    # python-multipart would say "Did not find CR at end of boundary (10)", "Found invalid character 32 in
    # header at 14", "Expected boundary character 98, got 119 at index 4"
    for body in (b"--b0undaryX\r\n", b"--b0undary\r\nno colon here\r\n\r\n", b"--wrong\r\n", b"xx--b0undary\r\n"):
        status, _, answer = raw(server.url, "POST", f"/api/v1/projects/{project_id}/cases", body=body,
                                headers={"Content-Type": "multipart/form-data; boundary=b0undary"})
        detail = json.loads(answer)["detail"]
        assert status == 400, detail
        assert detail == ("the multipart body is malformed (damaged part headers or boundaries); send the files "
                          "again as multipart/form-data"), detail
        assert not any(word in detail for word in ("Did not find", "character", "index", "(10)"))
    assert workspace_files(server.workspace) == before


def test_a_resumed_job_does_not_show_the_previous_attempts_progress(server, project, phantom_files):
    """Until the new attempt reports (the real pipeline needs ~15 s to start), no progress is shown."""
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=1)
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 400, "step_s": 0.05, "start_s": 1.5}})
    running = wait_state(client, job["id"], ("running",))
    while (running["progress"] or {}).get("step", 0) < 3:
        running = client.job_status(job["id"])
    client.cancel_job(job["id"])
    cancelled = wait_state(client, job["id"], ("cancelled",))
    assert cancelled["progress"]["state"] == "cancelled"  # the stopped attempt's last word stays visible
    stopped_at = cancelled["progress"]["step"]
    resumed = client.resume_job(job["id"])
    assert resumed["progress"] is None, resumed["progress"]
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = client.job_status(job["id"])
        seen.append((status["state"], status["attempts"], status["progress"]))
        if status["progress"] is not None:
            break
        time.sleep(0.05)
    assert ("running", 2, None) in seen, seen  # the second attempt ran a while without a report
    first = seen[-1][2]
    assert seen[-1][:2] == ("running", 2) and first["state"] == "running" and first["step"] > stopped_at, seen[-1]
    assert all(progress is None for _, _, progress in seen[:-1]), seen
    client.cancel_job(job["id"])
    wait_state(client, job["id"], ("cancelled",))
