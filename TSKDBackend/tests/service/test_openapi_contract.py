"""The published OpenAPI schema tells the truth: Schemathesis (pinned in the test extras) fuzzes a
real ``tskd serve`` on a loopback port, with a token, from its own ``/openapi.json``.

Every check is on (server errors, documented status codes, response bodies and headers against
the schema, schema-invalid data refused, schema-valid data accepted, ``Allow`` on 405, auth...)
and all four phases run. It is bounded and reproducible: a fixed seed, a fixed number of
examples per operation, one worker. 20 examples per operation (60 until 2026-12-06: the fuzzing and
stateful phases grow with it, the coverage phase does not) still test all 32 operations in the coverage
and fuzzing phases with 869 requests in all (measured 2026-12-06). The few refusals of schema-valid data that
JSON Schema cannot express are listed, with the reason, in ``schemathesis.toml`` beside this file.

The server holds a project with labelled cases, a finished job and its model before the run, and
the run's path parameters name them, so that the operations reach the service's logic instead
of answering 404 (a second project and case are there to be deleted).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.service.helpers import FAKE_TRAIN_COMMAND, ServerProcess, add_cases, project_labels, wait_state

TOKEN = "contract-test-token"
SEED = 20261203
EXAMPLES = 20  # per operation in the fuzzing and stateful phases (the coverage phase's cases come on top)
CONFIG = Path(__file__).with_name("schemathesis.toml")

pytestmark = pytest.mark.slow


def _schemathesis() -> str:
    found = shutil.which("schemathesis", path=str(Path(sys.executable).parent)) or shutil.which("schemathesis")
    assert found, "schemathesis is not installed: it is pinned in the backend's test extras (pip install -e 'TSKDBackend[test]')"
    return found


def _config(tmp_path: Path, ids: dict[str, str], doomed: dict[str, str]) -> Path:
    """The static settings plus the path parameters of this server's objects."""
    lines = [CONFIG.read_text(encoding="utf-8"), "", "[parameters]"]
    lines += [f'{key} = "{value}"' for key, value in ids.items()]
    lines += ["", "[[operations]]", 'include-name = "DELETE /api/v1/projects/{project_id}"',
              f'parameters = {{ project_id = "{doomed["project_id"]}" }}',
              "", "[[operations]]", 'include-name = "DELETE /api/v1/projects/{project_id}/cases/{name}"',
              f'parameters = {{ project_id = "{doomed["project_id"]}", name = "{doomed["name"]}" }}']
    path = tmp_path / "schemathesis.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_the_service_keeps_its_openapi_contract(tmp_path, phantom_files):
    server = ServerProcess(tmp_path / "ws", "--token", TOKEN, train_command=list(FAKE_TRAIN_COMMAND),
                           log=tmp_path / "server.log")  # the job-settings check stays on
    try:
        client = server.client(token=TOKEN)
        project = client.create_project("contract", project_labels())
        add_cases(client, project["id"], phantom_files, count=2)
        job = client.start_job(project["id"], preset="tiny")
        done = wait_state(client, job["id"], ("done", "failed"), timeout=120)
        assert done["state"] == "done", done
        # an unlabelled case: GET /projects/{id}/suggestions ranks it (202, then 200) instead of answering 409
        client.upload_case(project["id"], "unlabelled_000", str(phantom_files[sorted(phantom_files)[2]][0]))
        doomed = client.create_project("to-delete", project_labels())
        add_cases(client, doomed["id"], phantom_files, count=1)
        ids = {"project_id": project["id"], "job_id": job["id"], "model_id": done["model_id"],
               "name": sorted(phantom_files)[0]}
        config = _config(tmp_path, ids, {"project_id": doomed["id"], "name": sorted(phantom_files)[0]})
        schema = json.loads(_get(server.url + "/openapi.json"))
        operations = sum(1 for item in schema["paths"].values() for method in item
                         if method in ("get", "put", "post", "delete", "patch", "options", "head"))
        junit = tmp_path / "junit.xml"
        command = [_schemathesis(), "--no-color", "--config-file", str(config), "run", f"{server.url}/openapi.json",
                   "-H", f"Authorization: Bearer {TOKEN}", "--checks", "all", "--max-examples", str(EXAMPLES),
                   "--seed", str(SEED), "--workers", "1", "--phases", "examples,coverage,fuzzing,stateful",
                   "--report", "junit", "--report-junit-path", str(junit)]
        # its output has box-drawing characters and emoji: UTF-8 whatever the locale (CI's is ASCII)
        run = subprocess.run(command, capture_output=True, encoding="utf-8", errors="replace", timeout=600,
                             cwd=tmp_path, env={**os.environ, "PYTHONIOENCODING": "utf-8", "PYTHONUTF8": "1"})
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-6000:]
        suite = ET.parse(junit).getroot()
        assert suite.get("failures") == "0" and suite.get("errors") == "0", output[-6000:]
        tested = {case.get("name") for case in suite.iter("testcase")}
        assert len(tested - {"Stateful tests"}) == operations, (sorted(tested), operations)
        generated = int(re.search(r"(\d+) generated", output).group(1))
        assert generated >= operations * EXAMPLES, output[-3000:]  # 869 with 32 operations (2026-12-06)
        for phase in ("Coverage", "Fuzzing", "Stateful"):
            assert re.search(rf"✅ {phase}", output), output[-3000:]
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text(encoding="utf-8", errors="replace")
    assert "Traceback" not in log, log[-4000:]


def _get(url: str) -> str:
    import urllib.request

    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only
        return response.read().decode("utf-8")
