"""Cases over HTTP: upload (streamed multipart), list, metadata, download, replace, delete."""

from __future__ import annotations

import numpy as np
import pytest
from SlicerTSKDLib.backend.client import TSKDClientError

from tests.service.helpers import PHANTOM, workspace_files
from tskd.data.dataset import load_dataset
from tskd.data.image import Geometry, Image, read_image, write_image
from tskd.data.phantom import make_phantom


def test_upload_list_download_delete(server, project, phantom_files, tmp_path):
    client = server.client()
    image_path, label_path = phantom_files["case_000"]
    case = client.upload_case(project["id"], "case_000", str(image_path), str(label_path))
    image = read_image(image_path)
    assert case["name"] == "case_000" and case["labelled"] is True
    assert case["size"] == list(image.geometry.size) and case["spacing"] == list(image.geometry.spacing)
    assert case["label_values"] == [0, 1, 2] and case["source_format"] == ".nii.gz"
    # a .nii.gz image is stored byte for byte
    stored = server.workspace / "projects" / project["id"] / "dataset" / "images" / "case_000.nii.gz"
    assert stored.read_bytes() == image_path.read_bytes()

    client.upload_case(project["id"], "case_001", str(phantom_files["case_001"][0]))  # unlabelled
    listed = client.list_cases(project["id"])
    assert [(c["name"], c["labelled"]) for c in listed] == [("case_000", True), ("case_001", False)]
    assert client.get_project(project["id"])["cases"] == 2
    assert client.get_project(project["id"])["labelled_cases"] == 1
    assert client.get_project(project["id"])["dimension"] == 3

    got = client.download_case_label(project["id"], "case_000", str(tmp_path / "dl" / "label.nii.gz"))
    label = read_image(got, kind="label")
    np.testing.assert_array_equal(label.array, read_image(label_path, kind="label").array)
    assert label.geometry.mismatch(image.geometry) is None
    got = client.download_case_image(project["id"], "case_001", str(tmp_path / "dl" / "image.nii.gz"))
    np.testing.assert_array_equal(read_image(got).array, read_image(phantom_files["case_001"][0]).array)
    with pytest.raises(TSKDClientError) as err:
        client.download_case_label(project["id"], "case_001", str(tmp_path / "dl" / "none.nii.gz"))
    assert err.value.status == 404 and "has no label" in err.value.message
    assert not (tmp_path / "dl" / "none.nii.gz").exists()

    # the stored folder is a dataset the data layer (and so a training job) reads as is
    dataset = load_dataset(server.workspace / "projects" / project["id"] / "dataset")
    assert sorted(c.case_id for c in dataset.cases) == ["case_000", "case_001"]
    assert dataset.label_table.names == ["background", "organ_a", "organ_b"]

    client.delete_case(project["id"], "case_000")
    assert [c["name"] for c in client.list_cases(project["id"])] == ["case_001"]
    assert not stored.exists()
    assert not (stored.parent.parent / "labels" / "case_000.nii.gz").exists()
    with pytest.raises(TSKDClientError) as err:
        client.get_case(project["id"], "case_000")
    assert err.value.status == 404


def test_replace_needs_the_flag(server, project, phantom_files):
    client = server.client()
    image_path, label_path = phantom_files["case_000"]
    client.upload_case(project["id"], "a", str(image_path), str(label_path))
    before = workspace_files(server.workspace)
    with pytest.raises(TSKDClientError) as err:
        client.upload_case(project["id"], "a", str(phantom_files["case_001"][0]))
    assert err.value.status == 409 and "replace=true" in err.value.message
    assert workspace_files(server.workspace) == before
    case = client.upload_case(project["id"], "a", str(phantom_files["case_001"][0]), replace=True)
    assert case["labelled"] is False  # the replacement has no label: the old one is gone
    labels = server.workspace / "projects" / project["id"] / "dataset" / "labels"
    assert list(labels.iterdir()) == []


def test_other_formats_are_converted_and_cropped_labels_pasted(server, project, tmp_path):
    client = server.client()
    image, label = make_phantom(PHANTOM, 0)
    image_nrrd = write_image(image, tmp_path / "image.nrrd")
    # a label cropped to the structures' extent (as Slicer saves .seg.nrrd), on the same grid
    cropped = label.array[2:6, 4:28, 3:29]
    origin = np.asarray(image.geometry.origin) + np.asarray([3, 4, 2]) * np.asarray(image.geometry.spacing)
    geometry = Geometry(size=cropped.shape[::-1], spacing=image.geometry.spacing, origin=tuple(origin),
                        direction=image.geometry.direction)
    label_path = write_image(Image(cropped.copy(), geometry), tmp_path / "label.seg.nrrd")
    case = client.upload_case(project["id"], "converted", str(image_nrrd), str(label_path))
    assert case["source_format"] == ".nrrd" and case["size"] == [32, 32, 8]
    dataset = server.workspace / "projects" / project["id"] / "dataset"
    stored_image = read_image(dataset / "images" / "converted.nii.gz")
    np.testing.assert_allclose(stored_image.array, image.array)
    stored_label = read_image(dataset / "labels" / "converted.nii.gz", kind="label")
    assert stored_label.geometry.mismatch(image.geometry) is None
    expected = np.zeros_like(label.array)
    expected[2:6, 4:28, 3:29] = cropped
    np.testing.assert_array_equal(stored_label.array, expected)


def test_2d_and_3d_cases_do_not_mix(server, project, phantom_files, tmp_path):
    client = server.client()
    client.upload_case(project["id"], "vol", str(phantom_files["case_000"][0]))
    flat = write_image(Image(np.zeros((16, 16), np.float32), Geometry.default((16, 16))), tmp_path / "flat.nii.gz")
    before = workspace_files(server.workspace)
    with pytest.raises(TSKDClientError) as err:
        client.upload_case(project["id"], "flat", str(flat))
    assert err.value.status == 422 and "is 2D but the project's cases are 3D" in err.value.message
    assert workspace_files(server.workspace) == before
