"""The token: required on every route but /health, wrong or missing -> 401 with nothing else;
listening beyond loopback without a token is refused."""

from __future__ import annotations

import http.client
import subprocess
import sys

import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import project_labels, workspace_files
from tskd.errors import ConfigError
from tskd.service.server import check_binding
from tskd.service.settings import ServiceSettings, is_loopback

TOKEN = "correct-horse-battery-staple"


def raw(server, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection(server.url.split("//")[1], timeout=30)
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, dict(response.getheaders()), data


def test_token_is_required(make_server, phantom_files):
    server = make_server(token=TOKEN)
    good = server.client()
    project = good.create_project("secret", project_labels())
    assert good.list_projects()[0]["name"] == "secret"
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        client = server.client(token=token)
        assert client.health()["status"] == "ok"  # the health check needs no token
        for call in (client.info, client.list_projects, lambda: client.get_project(project["id"]),
                     lambda: client.get_project("0123456789ab"),  # 401, not 404: nothing is revealed
                     lambda: client.create_project("x", project_labels())):
            with pytest.raises(TSKDClientError) as err:
                call()
            assert err.value.status == 401 and err.value.message == "unauthorized"
    before = workspace_files(server.workspace)
    with pytest.raises(TSKDClientError) as err:
        server.client(token="wrong").upload_case(project["id"], "x", str(phantom_files["case_000"][0]))
    assert err.value.status == 401
    assert workspace_files(server.workspace) == before
    assert [p["name"] for p in good.list_projects()] == ["secret"]


def test_large_upload_with_a_wrong_token(make_server, tmp_path):
    from tskd.service.auth import DRAIN_BYTES

    server = make_server(token=TOKEN)
    project = server.client().create_project("p", project_labels())
    big = tmp_path / "big.nii.gz"
    big.write_bytes(b"\0" * (DRAIN_BYTES + (4 << 20)))  # the server stops reading it: the client asks why
    before = workspace_files(server.workspace)
    with pytest.raises(TSKDClientError) as err:
        server.client(token="wrong").upload_case(project["id"], "x", str(big))
    assert err.value.status == 401 and err.value.message == "unauthorized"
    assert workspace_files(server.workspace) == before


def test_401_reveals_nothing(make_server):
    server = make_server(token=TOKEN)
    for path in ("/api/v1/projects", "/api/v1/projects/0123456789ab", "/api/v1/no/such/route", "/docs",
                 "/openapi.json"):
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": TOKEN},
                        {"Authorization": f"Basic {TOKEN}"}):
            status, response_headers, body = raw(server, "GET", path, headers)
            assert status == 401 and body == b'{"detail": "unauthorized", "code": "unauthorized"}'
            assert response_headers.get("www-authenticate") == "Bearer"
            assert "access-control-allow-origin" not in {k.lower() for k in response_headers}
    status, _, body = raw(server, "GET", "/openapi.json", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200 and b"/api/v1/projects" in body


def test_no_cors_headers_by_default(server):
    status, headers, _ = raw(server, "GET", "/api/v1/health", {"Origin": "http://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in {k.lower() for k in headers}  # see test_service_probe
    status, headers, _ = raw(server, "OPTIONS", "/api/v1/projects", {
        "Origin": server.url, "Access-Control-Request-Method": "POST"})  # a preflight, even from the server's own origin
    assert "access-control-allow-origin" not in {k.lower() for k in headers}


def test_binding_rules():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.1.2.3")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    with pytest.raises(ConfigError, match="refusing to listen on 0.0.0.0 without a token"):
        check_binding(ServiceSettings(workspace="/tmp/ws-never-created", host="0.0.0.0"))
    check_binding(ServiceSettings(workspace="/tmp/ws-never-created", host="0.0.0.0", token=TOKEN))
    check_binding(ServiceSettings(workspace="/tmp/ws-never-created", host="127.0.0.1"))


def test_cli_refuses_non_loopback_without_token(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tskd", "serve", "--workspace", str(tmp_path / "ws"), "--host", "0.0.0.0", "--port", "0"],
        capture_output=True, text=True, timeout=60, env={**__import__("os").environ, "TSKD_TOKEN": ""},
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in result.stderr
    assert "--token" in result.stderr
    assert not (tmp_path / "ws").exists()  # refused before touching anything
