"""StudentPackage: folders, run folders, zips (safe unpacking), and clear messages for bad metadata."""

from __future__ import annotations

import json
import shutil
import stat
import zipfile

import pytest

from tskd.errors import CheckpointError
from tskd.export import zip_package
from tskd.runtime import METADATA_NAME, PackageError, StudentPackage


def test_properties_from_a_folder_and_a_run_folder(package_014, tmp_path):
    folder = package_014[0]
    package = StudentPackage.load(folder)
    assert package.folder == folder and package.format_version == 1 and package.tskd_version
    assert package.label_values == [0, 1, 4] and package.label_names == ["background", "liver", "tumour"]
    assert package.labels[1].color == (1.0, 0.0, 0.0) and package.num_classes == 3
    assert package.input_size == 32 and package.slice_axis == 0
    assert package.normalization.mode == "percentile" and package.normalization.p_low == 1.0
    assert package.architecture == "unet_tiny" and package.student["parameters"] > 0
    assert package.teacher["architecture"] == "vit_b" and package.teacher["has_foundation_weights"] is False
    assert package.metrics["val_dice"] == 0.5
    assert package.onnx["argmax_agreement"] == 1.0 and package.input_name == "image"
    assert package.onnx_path.is_file() and package.torch_path is not None
    run = tmp_path / "run"
    shutil.copytree(folder, run / "package")
    assert StudentPackage.load(run).folder == run / "package"
    assert StudentPackage.load(run / "package" / "model.onnx").folder == run / "package"


def test_zip_round_trip_and_cache_reuse(package_014, tmp_path):
    run = tmp_path / "liver_run"
    shutil.copytree(package_014[0], run / "package")
    path = zip_package(run / "package")
    assert path == run / "liver_run.tskd.zip"  # inside the run folder, named after it
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["model.onnx", "student.pt", METADATA_NAME]
    first = StudentPackage.load(path)
    assert first.label_values == [0, 1, 4] and first.source == path
    assert first.folder.parent == run / ".tskd-cache"
    again = StudentPackage.load(path)
    assert again.folder == first.folder  # unpacked once
    other = StudentPackage.load(path, cache_dir=tmp_path / "elsewhere")
    assert other.folder.parent == tmp_path / "elsewhere"


def test_zip_with_the_package_in_one_folder(package_014, tmp_path):
    path = tmp_path / "nested.tskd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in package_014[0].iterdir():
            archive.write(file, arcname=f"liver/{file.name}")
    assert StudentPackage.load(path).num_classes == 3


def _zip_with(tmp_path, package_folder, extra_name, *, symlink=False):
    path = tmp_path / "evil.tskd.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for file in package_folder.iterdir():
            archive.write(file, arcname=file.name)
        info = zipfile.ZipInfo(extra_name)
        if symlink:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(info, "/etc/passwd" if symlink else "pwned")
    return path


@pytest.mark.parametrize(
    "name, symlink, match",
    [("../escape.txt", False, "unsafe member"), ("/tmp/abs.txt", False, "unsafe member"),
     ("sub/../../x", False, "unsafe member"), ("C:/windows.txt", False, "unsafe member"),
     ("link", True, "symbolic link")],
)
def test_malicious_zips_are_rejected_before_anything_is_written(package_014, tmp_path, name, symlink, match):
    path = _zip_with(tmp_path, package_014[0], name, symlink=symlink)
    with pytest.raises(PackageError, match=match):
        StudentPackage.load(path)
    assert not (tmp_path / ".tskd-cache").exists() or not any((tmp_path / ".tskd-cache").iterdir())
    assert not (tmp_path.parent / "escape.txt").exists()


def test_not_a_package(tmp_path):
    (tmp_path / "junk.tskd.zip").write_bytes(b"not a zip at all")
    with pytest.raises(PackageError, match="not a zip file"):
        StudentPackage.load(tmp_path / "junk.tskd.zip")
    empty = tmp_path / "empty.tskd.zip"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(PackageError, match=f"no {METADATA_NAME}"):
        StudentPackage.load(empty)
    (tmp_path / "folder").mkdir()
    with pytest.raises(PackageError, match="no tskd-model.json here or in"):
        StudentPackage.load(tmp_path / "folder")
    with pytest.raises(PackageError, match="not found"):
        StudentPackage.load(tmp_path / "missing")
    assert issubclass(PackageError, CheckpointError)


def _edit(folder, tmp_path, change):
    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    meta = json.loads((copy / METADATA_NAME).read_text(encoding="utf-8"))
    change(meta)
    (copy / METADATA_NAME).write_text(json.dumps(meta), encoding="utf-8")
    return copy


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda m: m.update(format="something-else"), r"field 'format' is 'something-else'"),
        (lambda m: m.update(format_version=7), "format_version 7 is newer"),
        (lambda m: m.pop("labels"), "missing field 'labels'"),
        (lambda m: m.update(labels=[{"value": 0, "name": "bg", "color": [0, 0, 0]}]), "at least 2 labels"),
        (lambda m: m["labels"].reverse(), r"labels\[0\]\.value: the first label .* must be the background"),
        (lambda m: m["labels"][1].update(color=[255, 0, 0]), r"labels\[1\]\.color: expected \[r, g, b\]"),
        (lambda m: m["labels"][2].update(value=1), "label values repeat"),
        (lambda m: m["labels"][1].pop("name"), r"labels\[1\]: missing field 'name'"),
        (lambda m: m["input"].update(size="32"), "input.size: expected a whole number"),
        (lambda m: m["input"].update(slice_axis=3), "input.slice_axis must be 0, 1 or 2"),
        (lambda m: m["input"]["normalization"].update(mode="zscore"), "input.normalization: normalization mode"),
        (lambda m: m["input"]["normalization"].update(lower=1.0, upper=2.0, mean=0.0, std=1.0),
         "input.normalization holds one image's percentile statistics"),
        (lambda m: m["input"].pop("normalization"), "missing field 'normalization'"),
    ],
)
def test_bad_metadata_names_the_file_and_field(package_014, tmp_path, change, match):
    folder = _edit(package_014[0], tmp_path, change)
    with pytest.raises(PackageError, match=match) as info:
        StudentPackage.load(folder)
    assert str(folder / METADATA_NAME) in str(info.value)


def test_broken_json_and_missing_onnx(package_014, tmp_path):
    folder = _edit(package_014[0], tmp_path, lambda m: None)
    (folder / "model.onnx").unlink()
    with pytest.raises(PackageError, match=r"model.onnx: missing"):
        StudentPackage.load(folder)
    (folder / METADATA_NAME).write_text("{not json", encoding="utf-8")
    with pytest.raises(PackageError, match="cannot be read as JSON"):
        StudentPackage.load(folder)


def test_a_damaged_onnx_file_is_a_package_error(package_014, tmp_path):
    from tskd.runtime import OnnxSegmenter

    folder = _edit(package_014[0], tmp_path, lambda m: None)
    (folder / "model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(PackageError, match="onnxruntime cannot load the model"):
        OnnxSegmenter(folder, threads=1)
    broken = _edit(package_014[0], tmp_path / "b", lambda m: m["labels"].append({"value": 9, "name": "x", "color": [0, 0, 1]}))
    with pytest.raises(PackageError, match="does not have 4 classes"):
        OnnxSegmenter(broken, threads=1)
