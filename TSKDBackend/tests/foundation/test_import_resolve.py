"""``tskd foundation import`` (official and Hugging Face layouts in, wrong files out) and ``--base NAME|auto``."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from tskd.cli.main import main
from tskd.errors import CheckpointError, ConfigError
from tskd.foundation.cache import WeightsCache
from tskd.foundation.importing import import_weights
from tskd.foundation.resolve import list_weights, resolve_base


def test_import_official_pth_hard_links_and_records(tiny_files, capsys):
    assert main(["foundation", "import", str(tiny_files.official_pth), "--name", "my-sam"]) == 0
    cache = WeightsCache()
    record = cache.get("my-sam")
    assert record.architecture == "tiny" and record.sha256 == tiny_files.sha256 and record.origin == "import"
    target = cache.path_of(record)
    assert target.name == "my-sam.pth" and target.read_bytes() == tiny_files.official_pth.read_bytes()
    assert target.stat().st_ino == tiny_files.official_pth.stat().st_ino  # hard link on the same file system
    assert "use --base my-sam" in capsys.readouterr().out
    assert resolve_base("my-sam") == str(target)
    rows = {r["name"]: r for r in list_weights()}
    assert rows["my-sam"]["state"] == "verified" and rows["my-sam"]["catalog"] is False


def test_import_matching_a_catalog_hash_becomes_that_entry(tiny_files, test_catalog):
    record = import_weights(tiny_files.official_pth, link=False)
    assert record.name == "sam-tiny" and record.catalog == "sam-tiny" and record.verified_against == "catalog sha256"
    assert WeightsCache().path_of(record).name == "sam_tiny_0123ab.pth"  # the catalog's file name
    assert resolve_base("sam-tiny") == str(WeightsCache().path_of(record))


@pytest.mark.parametrize("which", ["hf_folder", "hf_safetensors"])
def test_import_hugging_face_layouts(tiny_files, which):
    path = getattr(tiny_files, which)
    record = import_weights(path, name="tiny-hf")
    target = WeightsCache().path_of(record)
    assert record.architecture == "tiny" and target.exists()
    from tskd.teacher.checkpoints import checkpoint_sha256

    assert checkpoint_sha256(target)[0] == record.sha256 == checkpoint_sha256(path)[0]


def test_truncated_file_is_refused_with_its_name(tiny_files, tmp_path, capsys):
    cut = tmp_path / "sam_vit_b_01ec64.pth"
    data = tiny_files.official_pth.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    assert main(["foundation", "import", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tskd: error: import refused: ") and str(cut) in err and "expected a SAM" in err
    assert "Traceback" not in err and err.count("\n") == 1
    assert WeightsCache().records() == {} and not list(WeightsCache().root.glob("*.pth"))


def test_non_sam_pth_is_refused(tmp_path):
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(4, 3, 3, 3), "fc.bias": torch.zeros(10)}, other)
    with pytest.raises(CheckpointError, match=rf"import refused: {other}: not a SAM checkpoint.*conv1.weight"):
        import_weights(other)
    assert WeightsCache().records() == {}


def test_safetensors_of_another_model_is_refused(tmp_path):
    other = tmp_path / "bert.safetensors"
    save_file({"bert.embeddings.word_embeddings.weight": torch.zeros(8, 4)}, str(other))
    with pytest.raises(CheckpointError, match=rf"import refused: {other}: not a SAM checkpoint"):
        import_weights(other)


def test_wrong_file_under_a_catalog_name_is_refused(tiny_files):
    with pytest.raises(CheckpointError, match=r"is not sam-vit-b \(expected sha256 ec2df627"):
        import_weights(tiny_files.official_pth, name="sam-vit-b")


def test_base_auto_prefers_the_catalog_order_and_falls_back_to_scratch(tiny_files, test_catalog, caplog):
    assert resolve_base("auto") == "none"
    assert "tskd foundation get litemedsam" in caplog.text
    import_weights(tiny_files.official_pth, name="zz-own")
    assert resolve_base("auto").endswith("zz-own.pth")  # imported weights when no catalog model is present
    catalog = import_weights(tiny_files.official_pth)  # the catalog entry sam-tiny
    assert resolve_base("auto") == str(WeightsCache().path_of(catalog))


def test_absent_catalog_name_says_which_command_gets_it():
    with pytest.raises(ConfigError, match=r"--base medsam-vit-b: not in the cache .*tskd foundation get medsam-vit-b"):
        resolve_base("medsam-vit-b")
    assert resolve_base("none") == "none" and resolve_base(None) is None


def test_changed_file_is_not_used(tiny_files, tmp_path):
    copy = tmp_path / "mine.pth"
    copy.write_bytes(tiny_files.official_pth.read_bytes())
    record = import_weights(copy, link=False)
    path = WeightsCache().path_of(record)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ConfigError, match="is changed since it was recorded"):
        resolve_base(record.name)


def test_pipeline_config_resolves_names_and_auto(tiny_files):
    from tskd.runconfig import resolve_config

    assert resolve_config(preset="cpu-small", base="auto").teacher.base == "none"
    record = import_weights(tiny_files.official_pth, name="my-sam")
    config = resolve_config(preset="cpu-small", base="my-sam")
    assert config.teacher.base == str(WeightsCache().path_of(record))
    assert resolve_config(preset="cpu-small", base="auto").teacher.base == config.teacher.base


def test_batch_file_keeps_names_for_the_cache(tiny_files, tmp_path):
    from tskd.pipeline.batch_config import load_batch_file

    record = import_weights(tiny_files.official_pth, name="my-sam")
    (tmp_path / "data").mkdir()
    (tmp_path / "batch.yaml").write_text(
        "output_root: out\ntasks:\n  - {name: a, data: data, base: my-sam}\n  - {name: b, data: data, base: auto}\n",
        encoding="utf-8")
    planned, _ = load_batch_file(tmp_path / "batch.yaml")
    expected = str(WeightsCache().path_of(record))
    assert [p.config.teacher.base for p in planned] == [expected, expected]


# -- --base auto: LiteMedSAM first where the teacher trains on the CPU, MedSAM ViT-B first on a GPU ----------------
def _cached(name: str, file: str, architecture: str):
    """A catalog entry 'present' in the cache (its file's content does not matter to resolving)."""
    import hashlib

    from tskd.foundation.cache import CachedWeights

    cache = WeightsCache()
    cache.root.mkdir(parents=True, exist_ok=True)
    data = name.encode() * 100
    (cache.root / file).write_bytes(data)
    return cache.record(CachedWeights(name=name, path=file, sha256=hashlib.sha256(data).hexdigest(), size=len(data),
                                      architecture=architecture, origin="download", catalog=name))


def test_preference_order_is_the_catalogs_on_a_gpu_and_litemedsam_first_on_a_cpu(monkeypatch):
    from tskd.foundation import resolve

    def names(device):
        return [e.name for e in resolve.preference_order(device)]

    assert names("cuda") == ["medsam-vit-b", "litemedsam", "sam-vit-b", "sam-vit-l", "sam-vit-h"]
    assert names("cpu") == ["litemedsam", "medsam-vit-b", "sam-vit-b", "sam-vit-l", "sam-vit-h"]
    monkeypatch.setattr(resolve, "has_gpu", lambda: True)
    assert names("auto") == names("cuda") and names("cpu")[0] == "litemedsam"  # device: cpu on a GPU machine
    assert [r["name"] for r in list_weights()][:2] == ["medsam-vit-b", "litemedsam"]
    monkeypatch.setattr(resolve, "has_gpu", lambda: False)
    assert names("auto") == names("cpu")
    rows = list_weights()
    assert [r["name"] for r in rows][:2] == ["litemedsam", "medsam-vit-b"]
    assert rows[0]["how"] == "tskd foundation get litemedsam (or import lite_medsam.pth)" and rows[0]["size"] == 39370479


def test_base_auto_picks_litemedsam_on_a_cpu_and_medsam_on_a_gpu(monkeypatch, caplog):
    from tskd.foundation import resolve

    lite = str(WeightsCache().path_of(_cached("litemedsam", "lite_medsam.pth", "litemedsam")))
    medsam = str(WeightsCache().path_of(_cached("medsam-vit-b", "medsam-vit-b", "medsam")))
    assert resolve_base("auto", device="cpu") == lite
    assert "the teacher trains on the CPU, so the order is litemedsam, medsam-vit-b" in caplog.text
    assert resolve_base("auto", device="cuda") == medsam
    monkeypatch.setattr(resolve, "has_gpu", lambda: False)
    assert resolve_base("auto") == lite
    monkeypatch.setattr(resolve, "has_gpu", lambda: True)
    assert resolve_base("auto") == medsam and resolve_base("auto", device="cpu") == lite
    WeightsCache().remove("litemedsam")
    assert resolve_base("auto", device="cpu") == medsam  # the next one present


def test_train_base_auto_follows_the_teachers_device(monkeypatch):
    from tskd.foundation import resolve
    from tskd.runconfig import resolve_config

    monkeypatch.setattr(resolve, "has_gpu", lambda: False)
    lite = str(WeightsCache().path_of(_cached("litemedsam", "lite_medsam.pth", "litemedsam")))
    medsam = str(WeightsCache().path_of(_cached("medsam-vit-b", "medsam-vit-b", "medsam")))
    assert resolve_config(base="auto").teacher.base == lite
    on_gpu = {"teacher": {"train": {"device": "cuda"}}}
    assert resolve_config(base="auto", overrides=on_gpu).teacher.base == medsam
