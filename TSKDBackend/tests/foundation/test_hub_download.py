"""The Hugging Face path of ``tskd foundation get`` (MedSAM's automatic source) through
``huggingface_hub`` itself, against a loopback server that answers like the hub: the metadata
``HEAD``, the 302 to the content server, a download cut half-way and resumed with ``Range``, the
files checked and recorded, progress passed on and a stop request honoured; an unknown revision is
one clear error (issue 34, item 6)."""

from __future__ import annotations

import time

import pytest

from tests.foundation.loopback_hub import serve_hub
from tskd.errors import DownloadError
from tskd.foundation.cache import WeightsCache
from tskd.foundation.fetch import get_weights

pytest.importorskip("huggingface_hub")

REVISION = "0" * 40


@pytest.fixture()
def hub(tiny_files, monkeypatch):
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tiny_files.hf_folder.parent / "hf_home_never_used"))
    files = {name: (tiny_files.hf_folder / name).read_bytes() for name in ("config.json", "model.safetensors")}
    with serve_hub("test/sam-tiny", REVISION, files) as state:
        yield state


def test_the_hub_library_downloads_resumes_reports_and_verifies(hub, test_catalog, tiny_files, monkeypatch):
    import huggingface_hub.constants

    # read in 16 KiB pieces (10 MiB by default) so that the cut tiny file resumes as a large one would
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16 << 10)
    assert len(hub.files["model.safetensors"]) > 64 << 10
    hub.cut_first.add("model.safetensors")
    events = []
    record = get_weights("sam-tiny-hf", mirror=hub.url, use_hub=True, retries=1, backoff_s=0, progress=events.append)
    assert events and {e.stage for e in events} == {"download"}  # the service and the CLI show these
    assert any(e.message == "model.safetensors" for e in events)
    cache = WeightsCache()
    folder = cache.path_of(record)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    for name in ("config.json", "model.safetensors"):
        assert (folder / name).read_bytes() == hub.files[name], name
    assert record.files == {"model.safetensors": hub.sha("model.safetensors")}
    assert record.source == f"{hub.url}/test/sam-tiny@{REVISION}"
    methods = {(m, p.split("?")[0]) for m, p, _ in hub.requests}
    assert ("HEAD", f"/test/sam-tiny/resolve/{REVISION}/model.safetensors") in methods  # the hub's metadata
    cdn = [r for r in hub.requests if r[0] == "GET" and r[1].startswith("/cdn/")]
    assert len(cdn) >= 2 and cdn[0][2] is None and cdn[-1][2] not in (None, "bytes=0-"), cdn  # resumed by Range
    assert not list(cache.root.glob(".*part")) and not list(folder.glob(".*"))

    from tskd.teacher.checkpoints import checkpoint_sha256, load_sam

    assert checkpoint_sha256(folder)[0] == record.sha256
    _, info = load_sam(folder, input_size=128)
    assert info.architecture == "tiny"


def test_an_unknown_revision_is_one_clear_error(hub, test_catalog):
    hub.missing_revision = True
    with pytest.raises(DownloadError) as err:
        get_weights("sam-tiny-hf", mirror=hub.url, use_hub=True, retries=0, backoff_s=0)
    message = str(err.value)
    assert "test/sam-tiny/config.json" in message and "Hugging Face download failed" in message
    assert "--mirror" in message
    assert not (WeightsCache().root / "sam-tiny-hf").exists()


def test_a_hub_download_stops_when_asked_and_leaves_no_partial_file(hub, test_catalog, monkeypatch):
    """huggingface_hub 2.x deletes a file it did not finish (it resumes within a run only): a stopped
    download keeps the files that arrived whole, nothing cut short, and the next run completes it."""
    import huggingface_hub.constants

    from tskd.errors import CancelledError

    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 16 << 10)
    hub.slow = 0.05  # s between the content server's 16 KiB pieces
    seen = []

    def stop_after_some() -> bool:  # once a few pieces of the weights arrived
        return sum(e.message == "model.safetensors" for e in seen) > 3

    started = time.monotonic()
    with pytest.raises(CancelledError):
        get_weights("sam-tiny-hf", mirror=hub.url, use_hub=True, retries=0, progress=seen.append,
                    should_stop=stop_after_some)
    assert time.monotonic() - started < 5  # not after the whole (slow) file
    cache = WeightsCache()
    assert cache.get("sam-tiny-hf") is None and not (cache.root / "sam-tiny-hf").exists()
    staging = cache.root / ".sam-tiny-hf.part"
    assert (staging / "config.json").read_bytes() == hub.files["config.json"]  # whole files stay
    assert not (staging / "model.safetensors").exists() and not list(staging.rglob("*.incomplete"))
    hub.slow = 0.0
    record = get_weights("sam-tiny-hf", mirror=hub.url, use_hub=True, retries=0)
    assert (cache.path_of(record) / "model.safetensors").read_bytes() == hub.files["model.safetensors"]
    config_gets = [p for m, p, _ in hub.requests if m == "GET" and p.endswith("/config.json")]
    assert len(config_gets) == 1  # the whole file was not fetched again
