"""Issue 33: the box models the Slicer module's box tool runs, served by a real backend on loopback and
fetched with the module's own client (``download_checkpoint_box_model``, ``download_model_box_model``).

The zero-shot model is the real LiteMedSAM, exported by the server on the first request into its
workspace and served from there afterwards; a model's task-tuned box model is its package's
``box_model/`` (here a copy of the LiteMedSAM export, placed as the pipeline will place the teacher's).
"""

from __future__ import annotations

import filecmp
import shutil
import zipfile

import pytest
from SlicerTSKDLib.backend.client import TSKDClientError
from tests.conftest import TEST_HOME

from tests.service.helpers import add_cases, wait_state
from tskd.runtime.box_model import BOX_METADATA_NAME, DECODER_NAME, ENCODER_NAME, BoxModelInfo, unpack_box_model

GRAPH_FILES = (BOX_METADATA_NAME, DECODER_NAME, ENCODER_NAME)


@pytest.fixture(scope="module")
def litemedsam_export(litemedsam_checkpoint):
    """The suite's LiteMedSAM box model (exported once per clone into the test home by the same function)."""
    from tskd.inference.box_segment import zero_shot_box_model

    return zero_shot_box_model(str(litemedsam_checkpoint), cache_dir=TEST_HOME / "box_models", name="litemedsam")


@pytest.mark.package_index
def test_the_zero_shot_model_is_exported_once_by_the_server_and_served(server, litemedsam_checkpoint, litemedsam_export,
                                                                        tmp_path):
    from tskd.foundation import WeightsCache, import_weights

    client = server.client()
    with pytest.raises(TSKDClientError) as absent:
        client.download_checkpoint_box_model("litemedsam", str(tmp_path / "absent.zip"))
    assert absent.value.status == 409 and "fetch it first" in absent.value.message
    with pytest.raises(TSKDClientError) as unknown:
        client.download_checkpoint_box_model("no-such-model", str(tmp_path / "unknown.zip"))
    assert unknown.value.status == 404 and "no checkpoint named 'no-such-model'" in unknown.value.message
    assert not (tmp_path / "absent.zip").exists() and not (tmp_path / "unknown.zip").exists()

    import_weights(litemedsam_checkpoint, cache=WeightsCache(server.settings.weights_cache), link=True)
    first = client.download_checkpoint_box_model("litemedsam", str(tmp_path / "first.zip"))
    folder = unpack_box_model(first, tmp_path / "unpacked")
    assert sorted(p.name for p in folder.folder.iterdir()) == sorted(GRAPH_FILES)
    assert folder.model == "litemedsam" and folder.input_size == 256
    assert folder.checkpoint_sha256 == BoxModelInfo.load(litemedsam_export).checkpoint_sha256
    exports = sorted(p.name for p in (server.workspace / "box_models").iterdir() if not p.name.startswith("."))
    assert exports == ["litemedsam-79d8c9dca6db", "litemedsam-79d8c9dca6db.zip"]
    # the server's export is the graphs tskd segment-box makes (same function, same weights)
    for name in (ENCODER_NAME, DECODER_NAME):
        assert (folder.folder / name).stat().st_size == (litemedsam_export / name).stat().st_size

    kept = [(path, path.stat().st_ino, path.stat().st_mtime_ns) for path in (server.workspace / "box_models").rglob("*")
            if path.is_file()]
    second = client.download_checkpoint_box_model("litemedsam", str(tmp_path / "second.zip"))
    assert filecmp.cmp(first, second, shallow=False)
    # served from the workspace: neither exported nor zipped again
    assert [(path, path.stat().st_ino, path.stat().st_mtime_ns) for path, _, _ in kept] == kept
    with zipfile.ZipFile(second) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_STORED}


@pytest.mark.package_index
def test_a_models_task_tuned_box_model_is_served_when_its_package_has_one(server, project, phantom_files,
                                                                           litemedsam_export, tmp_path):
    client = server.client()
    add_cases(client, project["id"], phantom_files, count=2)
    job = client.start_job(project["id"], preset="tiny", settings={"fake": {"steps": 2, "step_s": 0.01}})
    model_id = wait_state(client, job["id"], ("done", "failed"))["model_id"]
    assert client.list_models(project["id"])[0]["box_model"] is None
    with pytest.raises(TSKDClientError) as none:
        client.download_model_box_model(model_id, str(tmp_path / "none.zip"))
    assert none.value.status == 404 and "has no task-tuned box model" in none.value.message
    assert "checkpoints/litemedsam/box-model" in none.value.message

    package = server.service.models.package_dir(model_id)
    shutil.copytree(litemedsam_export, package / "box_model")  # where the run's export puts the teacher's graphs
    listed = client.list_models(project["id"])[0]["box_model"]
    assert listed["model"] == "litemedsam" and listed["input_size"] == 256 and listed["architecture"] == "litemedsam"
    assert listed["size_bytes"] == sum((litemedsam_export / name).stat().st_size for name in GRAPH_FILES)
    served = client.download_model_box_model(model_id, str(tmp_path / "tuned.zip"))
    info = unpack_box_model(served, tmp_path / "tuned")
    for name in GRAPH_FILES:
        assert filecmp.cmp(info.folder / name, litemedsam_export / name, shallow=False)
    # the student's package stays the student: the box model is only sent by its own route
    with zipfile.ZipFile(client.download_model(model_id, str(tmp_path / "student.tskd.zip"))) as archive:
        assert sorted(archive.namelist()) == ["model.onnx", "tskd-model.json"]

    (package / "box_model" / ENCODER_NAME).unlink()  # damaged: not offered, and a clear 404
    assert client.list_models(project["id"])[0]["box_model"] is None
    with pytest.raises(TSKDClientError) as damaged:
        client.download_model_box_model(model_id, str(tmp_path / "damaged.zip"))
    assert damaged.value.status == 404 and "box model is incomplete" in damaged.value.message
