from __future__ import annotations

import json
import time

import numpy as np
import pytest
import SimpleITK as sitk

from tskd.data import phantom as phantom_module
from tskd.data.phantom import PhantomConfig, make_phantom, phantom_labels, write_phantom_dataset
from tskd.errors import ConfigError, DataError


def _read(path):
    image = sitk.ReadImage(str(path))
    return image, sitk.GetArrayFromImage(image)


def test_same_seed_gives_identical_arrays_and_cases_differ():
    config = PhantomConfig(seed=3)
    a_img, a_lab = make_phantom(config, 1)
    b_img, b_lab = make_phantom(PhantomConfig(seed=3), 1)
    np.testing.assert_array_equal(a_img.array, b_img.array)
    np.testing.assert_array_equal(a_lab.array, b_lab.array)
    c_img, c_lab = make_phantom(config, 2)
    assert not np.array_equal(a_lab.array, c_lab.array)
    d_img, _ = make_phantom(PhantomConfig(seed=4), 1)
    assert not np.array_equal(a_img.array, d_img.array)


def test_default_phantom_shape_labels_and_class_presence():
    image, label = make_phantom(PhantomConfig(), 0)
    assert image.array.shape == (32, 64, 64) and image.array.dtype == np.float32
    assert label.array.dtype == np.uint8
    assert set(np.unique(label.array)) == {0, 1, 2, 3}
    assert image.geometry.spacing == (1.0, 1.0, 2.5)
    assert image.geometry == label.geometry
    # every class is present in most slices of the middle half of the volume
    for case in range(6):
        _, label = make_phantom(PhantomConfig(seed=11), case)
        middle = label.array[8:24]
        for value in (1, 2, 3):
            present = np.mean([(s == value).sum() >= 20 for s in middle])
            assert present >= 0.9, f"case {case}: class {value} in {present:.0%} of middle slices"


def test_classes_have_distinct_intensities():
    image, label = make_phantom(PhantomConfig(), 0)
    means = [float(image.array[label.array == v].mean()) for v in range(4)]
    stds = [float(image.array[label.array == v].std()) for v in range(1, 4)]
    tissue = image.array[(label.array == 0) & (image.array > 0.3)].mean()
    levels = sorted([tissue] + means[1:])
    gaps = np.diff(levels)
    assert gaps.min() > 1.5 * max(stds), (levels, stds)


def test_ct_modality_and_2d():
    image, label = make_phantom(PhantomConfig(modality="ct", structures=4), 0)
    assert image.array.dtype == np.int16
    assert image.array.min() <= -900 and image.array.max() > 200
    assert set(np.unique(label.array)) == {0, 1, 2, 3, 4}
    image2d, label2d = make_phantom(PhantomConfig(size=(48, 40)), 0)
    assert image2d.array.shape == (40, 48) and image2d.geometry.dimension == 2
    assert set(np.unique(label2d.array)) == {0, 1, 2, 3}


@pytest.mark.parametrize("config", [PhantomConfig(seed=5), PhantomConfig(modality="ct", structures=4),
                                    PhantomConfig(size=(48, 40)), PhantomConfig(deformation=0.0, bias=0.0)],
                         ids=["mr-3d", "ct-3d", "2d", "no-deformation"])
def test_sparse_grids_give_the_phantoms_of_full_grids(config, monkeypatch):
    """make_phantom works on sparse (broadcast) coordinate grids for speed: the same arrays, bit for bit,
    as on the full grids it used before (2026-12-06, one thread: 14 default phantoms 0.79 -> 0.35 s)."""
    sparse = [make_phantom(config, case) for case in range(2)]
    meshgrid = np.meshgrid
    monkeypatch.setattr(phantom_module.np, "meshgrid", lambda *xi, **kw: meshgrid(*xi, **{**kw, "sparse": False}))
    full = [make_phantom(config, case) for case in range(2)]
    for (image, label), (full_image, full_label) in zip(sparse, full):
        assert image.array.dtype == full_image.array.dtype and image.array.shape == full_image.array.shape
        np.testing.assert_array_equal(image.array, full_image.array)
        np.testing.assert_array_equal(label.array, full_label.array)
        assert image.geometry == full_image.geometry


@pytest.mark.serial  # a bound on seconds
def test_fast():
    start = time.perf_counter()
    make_phantom(PhantomConfig(), 5)
    assert time.perf_counter() - start < 1.0


def test_bad_config_is_a_config_error():
    with pytest.raises(ConfigError, match="structures"):
        PhantomConfig.from_dict({"structures": 9})
    with pytest.raises(ConfigError, match="size"):
        PhantomConfig.from_dict({"size": [4, 4, 4]})


def test_write_dataset_layout_geometry_and_labels_json(tmp_path):
    config = PhantomConfig(size=(40, 36, 12), spacing=(0.8, 0.8, 3.0), rotation_deg=(10.0, -5.0, 30.0),
                           origin=(-50.0, 20.0, 7.5))
    out = write_phantom_dataset(tmp_path / "ds", cases=3, seed=5, config=config, unlabelled=2)
    assert out == tmp_path / "ds"
    names = ["case_000.nii.gz", "case_001.nii.gz", "case_002.nii.gz"]
    assert sorted(p.name for p in (out / "images").iterdir()) == names
    assert sorted(p.name for p in (out / "labels").iterdir()) == names
    assert sorted(p.name for p in (out / "unlabelled").iterdir()) == ["case_003.nii.gz", "case_004.nii.gz"]
    labels = json.loads((out / "labels.json").read_text(encoding="utf-8"))
    assert labels["labels"][0] == {"value": 0, "name": "background"}
    assert [e["name"] for e in labels["labels"][1:]] == ["organ_a", "organ_b", "lesion"]
    assert all(len(e["color"]) == 3 for e in labels["labels"][1:])
    assert json.loads((out / "phantom.json").read_text(encoding="utf-8"))["config"]["seed"] == 5
    # nothing left behind next to the dataset
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]

    expected_image, expected_label = make_phantom(config.replace(seed=5), 1)
    image, array = _read(out / "images" / "case_001.nii.gz")
    label, label_array = _read(out / "labels" / "case_001.nii.gz")
    np.testing.assert_array_equal(array, expected_image.array)
    np.testing.assert_array_equal(label_array, expected_label.array)
    assert label_array.dtype == np.uint8
    for written in (image, label):
        assert written.GetSize() == (40, 36, 12)
        np.testing.assert_allclose(written.GetSpacing(), (0.8, 0.8, 3.0), atol=1e-6)
        np.testing.assert_allclose(written.GetOrigin(), (-50.0, 20.0, 7.5), atol=1e-5)
        direction = np.array(written.GetDirection()).reshape(3, 3)
        assert not np.allclose(direction, np.eye(3))
        np.testing.assert_allclose(direction @ direction.T, np.eye(3), atol=1e-5)
        np.testing.assert_allclose(direction, np.array(expected_image.geometry.direction).reshape(3, 3), atol=1e-5)


def test_existing_folder_needs_overwrite(tmp_path):
    out = write_phantom_dataset(tmp_path / "ds", cases=1, config=PhantomConfig(size=(16, 16, 8)))
    with pytest.raises(DataError, match="not empty"):
        write_phantom_dataset(out, cases=2, config=PhantomConfig(size=(16, 16, 8)))
    write_phantom_dataset(out, cases=2, config=PhantomConfig(size=(16, 16, 8)), overwrite=True)
    assert len(list((out / "images").iterdir())) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_interrupted_write_leaves_no_folder(tmp_path, monkeypatch):
    calls = []
    real = phantom_module.write_image

    def failing(image, path, **kwargs):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(image, path, **kwargs)

    monkeypatch.setattr(phantom_module, "write_image", failing)
    with pytest.raises(KeyboardInterrupt):
        write_phantom_dataset(tmp_path / "ds", cases=3, config=PhantomConfig(size=(16, 16, 8)))
    assert list(tmp_path.iterdir()) == []


def test_phantom_labels_follow_structures():
    assert [e["value"] for e in phantom_labels(PhantomConfig(structures=2))] == [0, 1, 2]
