"""Projects over HTTP with the Slicer client: create, list, get, update, delete, and the system routes."""

from __future__ import annotations

import json
import urllib.request

import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import project_labels
from tskd import __version__


def test_health_info_and_openapi(server):
    client = server.client()
    assert client.health() == {"status": "ok", "version": __version__}
    info = client.info()
    assert info["version"] == __version__ and info["api"] == "/api/v1"
    assert info["device"]["type"] in ("cpu", "cuda", "mps")
    assert info["checkpoints"] == []
    assert info["limits"]["max_upload_mb"] == server.settings.max_upload_mb
    schema = json.loads(urllib.request.urlopen(server.url + "/openapi.json", timeout=10).read())
    assert "/api/v1/projects/{project_id}/cases" in schema["paths"]
    assert "multipart/form-data" in schema["paths"]["/api/v1/projects/{project_id}/cases"]["post"]["requestBody"]["content"]
    components = schema["components"]["schemas"]
    assert "comparison" in components["JobOut"]["properties"] and "kind" in components["ModelOut"]["properties"]
    assert components["ComparisonOut"]["properties"]["chosen"]["enum"] == ["distilled", "reference"]
    assert "verdict" in components["ComparisonOut"]["required"]
    docs = urllib.request.urlopen(server.url + "/docs", timeout=10).read().decode()
    assert "swagger" in docs.lower()


def test_info_lists_base_checkpoints(server):
    folder = server.workspace / "checkpoints"
    (folder / "medsam_vit_b.pth").write_bytes(b"0" * 10)
    (folder / "sam.safetensors").write_bytes(b"0" * 20)
    hf = folder / "sam-vit-base"
    hf.mkdir()
    (hf / "config.json").write_text("{}", encoding="utf-8")
    (hf / "model.safetensors").write_bytes(b"0" * 30)
    (folder / "notes.txt").write_text("not a checkpoint", encoding="utf-8")
    found = {c["name"]: c for c in server.client().info()["checkpoints"]}
    assert set(found) == {"medsam_vit_b.pth", "sam.safetensors", "sam-vit-base"}
    assert found["medsam_vit_b.pth"]["kind"] == "pth" and found["medsam_vit_b.pth"]["size_bytes"] == 10
    assert found["sam-vit-base"]["kind"] == "huggingface" and found["sam-vit-base"]["size_bytes"] == 32


def test_project_crud(server):
    client = server.client()
    created = client.create_project("liver study", project_labels(), settings={"preset": "tiny"})
    assert created["name"] == "liver study" and created["cases"] == 0 and created["dimension"] is None
    assert [label["value"] for label in created["labels"]] == [0, 1, 2]
    assert created["labels"][1]["name"] == "organ_a"
    assert (server.workspace / "projects" / created["id"] / "dataset" / "labels.json").is_file()
    labels_json = json.loads((server.workspace / "projects" / created["id"] / "dataset" / "labels.json").read_text(encoding="utf-8"))
    assert [entry["name"] for entry in labels_json["labels"]] == ["background", "organ_a", "organ_b"]

    assert [p["id"] for p in client.list_projects()] == [created["id"]]
    assert client.get_project(created["id"])["settings"] == {"preset": "tiny"}

    updated = client.update_project(created["id"], name="liver", settings={"preset": "gpu"},
                                    labels=project_labels() + [{"value": 7, "name": "tumour"}])
    assert updated["name"] == "liver" and updated["settings"] == {"preset": "gpu"}
    assert [label["value"] for label in updated["labels"]] == [0, 1, 2, 7]
    labels_json = json.loads((server.workspace / "projects" / created["id"] / "dataset" / "labels.json").read_text(encoding="utf-8"))
    assert labels_json["labels"][-1] == {"value": 7, "name": "tumour"}

    client.delete_project(created["id"])
    assert client.list_projects() == []
    assert not (server.workspace / "projects" / created["id"]).exists()


def test_background_is_added_and_duplicates_refused(server):
    client = server.client()
    project = client.create_project("p", [{"value": 1, "name": "liver"}])
    assert project["labels"][0] == {"value": 0, "name": "background", "color": [0.0, 0.0, 0.0]}
    with pytest.raises(TSKDClientError) as err:
        client.create_project("q", [{"value": 1, "name": "liver"}, {"value": 1, "name": "spleen"}])
    assert err.value.status == 422 and "value 1 is given twice" in err.value.message
    with pytest.raises(TSKDClientError) as err:
        client.create_project("q", [{"value": 1, "name": "liver"}, {"value": 2, "name": "Liver"}])
    assert err.value.status == 422 and "name 'Liver' is given twice" in err.value.message
    with pytest.raises(TSKDClientError) as err:
        client.create_project("p", [{"value": 1, "name": "liver"}])
    assert err.value.status == 409 and "exists already" in err.value.message
    assert len(client.list_projects()) == 1


def test_invalid_project_bodies_say_which_field(server):
    client = server.client()
    with pytest.raises(TSKDClientError) as err:
        client.create_project("p", [{"value": -1, "name": "x"}])
    assert err.value.status == 422 and "labels[0].value" in err.value.message
    with pytest.raises(TSKDClientError) as err:
        client.create_project("p", [{"value": 1, "name": "x", "color": [255, 0, 0]}])
    assert err.value.status == 422 and "labels[0].color" in err.value.message and "0..1" in err.value.message
    with pytest.raises(TSKDClientError) as err:
        client.create_project("p", [])
    assert err.value.status == 422 and "labels" in err.value.message


def test_unknown_ids_are_404(server):
    client = server.client()
    for call in (
        lambda: client.get_project("0123456789ab"),
        lambda: client.get_project("../../etc"),
        lambda: client.delete_project("0123456789ab"),
        lambda: client.list_cases("0123456789ab"),
        lambda: client.job_status("0123456789ab"),
        lambda: client.cancel_job("nope"),
        lambda: client.get_model("0123456789ab"),
        lambda: client.download_model("0123456789ab", str(server.workspace.parent / "x.zip")),
    ):
        with pytest.raises(TSKDClientError) as err:
            call()
        assert err.value.status == 404, err.value
        assert "no " in err.value.message
    assert not (server.workspace.parent / "x.zip").exists()
