"""Loading datasets: layouts, pairing, manifests, spacing tables, subjects, and every kind of bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from tests.data.datamaker import folder_dataset, label_for, volume, write, write_dicom_series, write_json

from tskd.data.dataset import build_dataset, load_dataset
from tskd.data.image import Geometry, Image, write_image
from tskd.errors import DataError


def messages(dataset, severity=None):
    return [f"{p.path.name if p.path else ''}: {p.message}" for p in dataset.problems if severity in (None, p.severity)]


def test_images_and_labels_folders(tmp_path):
    folder_dataset(tmp_path, 3)
    dataset = load_dataset(tmp_path)
    assert dataset.layout == "folders" and dataset.dimension == 3 and dataset.usable
    assert [c.case_id for c in dataset.labelled] == ["case_0", "case_1", "case_2"] and not dataset.unlabelled
    assert dataset.problems == []
    assert dataset.label_table.values == [0, 1, 2] and dataset.label_table.source == "values found"
    image, label = dataset.read_case(dataset.cases[1])
    assert np.array_equal(image.array, volume(seed=1)) and np.array_equal(label.array, label_for())
    assert image.geometry == label.geometry and np.allclose(image.geometry.spacing, (0.8, 0.8, 2.0))


def test_masks_folder_unlabelled_folder_and_extra_files(tmp_path):
    folder_dataset(tmp_path, 2, label_dir="masks")
    write(tmp_path / "images" / "lonely.nii.gz", volume())
    write(tmp_path / "masks" / "orphan.nii.gz", label_for())
    write(tmp_path / "unlabelled" / "extra.nii.gz", volume())
    (tmp_path / "images" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (tmp_path / "masks" / "notes.txt").write_text("labelled by Dr X", encoding="utf-8")
    dataset = load_dataset(tmp_path)
    assert [c.case_id for c in dataset.labelled] == ["case_0", "case_1"]
    assert [c.case_id for c in dataset.unlabelled] == ["extra", "lonely"]
    assert messages(dataset, "warning") == [
        ".DS_Store: skipped: not an image file",
        "notes.txt: skipped: not an image file",
        "lonely.nii.gz: no label in masks/: used as an unlabelled image",
    ]
    assert messages(dataset, "error") == [
        "orphan.nii.gz: label without an image: no file named 'orphan' (any image suffix) in images/; "
        "add the image or remove the label"
    ]
    assert dataset.usable  # errors on single files never stop a usable dataset


def test_msd_layout_with_channel_suffix_test_images_and_dataset_json(tmp_path):
    for i in range(2):
        write(tmp_path / "imagesTr" / f"liver_{i}_0000.nii.gz", volume(seed=i))
        write(tmp_path / "labelsTr" / f"liver_{i}.nii.gz", label_for())
        write(tmp_path / "imagesTs" / f"liver_{10 + i}_0000.nii.gz", volume(seed=i))
    write(tmp_path / "imagesTr" / "liver_0_0001.nii.gz", volume())  # a second modality
    write_json(tmp_path / "dataset.json", {"labels": {"0": "background", "1": "liver", "2": "tumour"}})
    dataset = load_dataset(tmp_path)
    assert dataset.layout == "msd"
    assert [c.case_id for c in dataset.labelled] == ["liver_0", "liver_1"]
    assert [c.case_id for c in dataset.unlabelled] == ["liver_10", "liver_11"]
    assert dataset.label_table.names == ["background", "liver", "tumour"] and dataset.label_table.source == "dataset.json"
    assert messages(dataset) == ["liver_0_0001.nii.gz: skipped: an extra image channel (only the _0000 channel is used; "
                                 "tskd supports single-channel images)"]


def test_label_name_suffixes_pair(tmp_path):
    write(tmp_path / "images" / "010_HC.png", (volume((10, 12)) % 256).astype(np.uint8))
    write(tmp_path / "labels" / "010_HC_Annotation.png", label_for((10, 12), (255,)))
    dataset = load_dataset(tmp_path)
    assert [(c.case_id, c.label_path.name) for c in dataset.labelled] == [("010_HC", "010_HC_Annotation.png")]


def test_label_not_on_image_grid_is_left_out_with_the_reason(tmp_path):
    folder_dataset(tmp_path, 3)
    write(tmp_path / "labels" / "case_1.nii.gz", label_for(), spacing=(1.0, 0.8, 2.0))
    write(tmp_path / "labels" / "case_2.nii.gz", label_for((6, 10, 11)), spacing=(0.8, 0.8, 2.0))
    dataset = load_dataset(tmp_path)
    assert [c.case_id for c in dataset.cases] == ["case_0"]
    errors = messages(dataset, "error")
    assert errors[0].startswith("case_1.nii.gz: does not overlay its image case_1.nii.gz: spacing (1, 0.8, 2) differs "
                                "from (0.8, 0.8, 2).")
    assert errors[1].startswith("case_2.nii.gz: does not overlay its image case_2.nii.gz: size (11, 10, 6) differs "
                                "from (12, 10, 6).")
    assert errors[0].endswith("(case left out)")


def test_undeclared_label_values(tmp_path):
    folder_dataset(tmp_path, 2, values=(1,))
    write(tmp_path / "labels" / "case_1.nii.gz", label_for(values=(1, 3)), spacing=(0.8, 0.8, 2.0))
    write_json(tmp_path / "labels.json", {"labels": {"1": "organ"}})
    dataset = load_dataset(tmp_path)
    with pytest.raises(DataError, match=r"case_1\.nii\.gz: label values \[3\] are not declared in labels\.json "
                                        r"\(declared: 0=background, 1=organ\)"):
        dataset.read_case(dataset.case("case_1"))
    values = dataset.scan_labels()
    assert values == {"case_0": {0, 1}} and [c.case_id for c in dataset.cases] == ["case_0"]
    assert "label values [3] are not declared" in messages(dataset, "error")[0]


def test_empty_and_corrupt_files_leave_their_case_out(tmp_path):
    folder_dataset(tmp_path, 3)
    (tmp_path / "images" / "case_1.nii.gz").write_bytes(b"")
    (tmp_path / "labels" / "case_2.nii.gz").write_bytes(b"\x1f\x8b garbage that is no gzip")
    dataset = load_dataset(tmp_path)
    assert [c.case_id for c in dataset.cases] == ["case_0"]
    assert messages(dataset, "error") == [
        "case_1.nii.gz: the file is empty (0 bytes); replace it with the real image or remove it (case left out)",
        "case_2.nii.gz: cannot be read as an image: unknown or damaged file format (case left out)",
    ]


def test_mixed_2d_and_3d_is_a_dataset_error(tmp_path):
    folder_dataset(tmp_path, 2)
    write(tmp_path / "images" / "flat.png", (volume((10, 12)) % 256).astype(np.uint8))
    write(tmp_path / "labels" / "flat.png", label_for((10, 12), (1,)))
    with pytest.raises(DataError, match=r"2D and 3D images are mixed \(1 2D, e\.g\. flat\.png, 2 3D, e\.g\. case_0"):
        load_dataset(tmp_path)
    assert build_dataset(tmp_path).fatal[0].startswith("2D and 3D images are mixed")


def test_unusable_folders(tmp_path):
    with pytest.raises(DataError, match="not found; give a dataset folder or a manifest file"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "scans").mkdir()
    (tmp_path / "README.md").write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"no images/ \(or imagesTr/\) folder found \(it holds: README\.md, scans/\)"):
        load_dataset(tmp_path)
    write(tmp_path / "images" / "a.nii.gz", volume())
    with pytest.raises(DataError, match="no labelled case is usable"):
        load_dataset(tmp_path)


def test_two_images_with_one_name(tmp_path):
    folder_dataset(tmp_path, 2)
    write(tmp_path / "images" / "case_0.nrrd", volume())
    dataset = load_dataset(tmp_path)
    assert [c.case_id for c in dataset.cases] == ["case_1"]
    assert messages(dataset, "error") == ["images: case 'case_0' has several images: case_0.nii.gz, case_0.nrrd; keep one (case left out)"]


def test_manifest_csv_and_json(tmp_path):
    folder_dataset(tmp_path / "data", 3)
    write(tmp_path / "data" / "other" / "u.nii.gz", volume())
    (tmp_path / "list.csv").write_text(
        "image,label,subject,spacing\n"
        "data/images/case_0.nii.gz,data/labels/case_0.nii.gz,p1,\n"
        "data/images/case_1.nii.gz,data/labels/case_1.nii.gz,p1,0.5 0.5 1.5\n"
        "data/images/case_2.nii.gz,data/labels/missing.nii.gz,p2,\n"
        "data/other/u.nii.gz,,p3,\n"
        "data/images/gone.nii.gz,data/labels/case_2.nii.gz,,\n"
    , encoding="utf-8")
    dataset = load_dataset(tmp_path / "list.csv")
    assert dataset.layout == "manifest"
    assert [(c.case_id, c.subject_id) for c in dataset.labelled] == [("case_0", "p1"), ("case_1", "p1")]
    assert [c.case_id for c in dataset.unlabelled] == ["u"]
    assert dataset.case("case_1").spacing_override == (0.5, 0.5, 1.5)
    image, label = dataset.read_case(dataset.case("case_1"))
    assert image.geometry.spacing == (0.5, 0.5, 1.5) and label.geometry == image.geometry
    assert messages(dataset, "error") == [
        f"list.csv: row 3: label {tmp_path}/data/labels/missing.nii.gz not found; fix the path (case left out)",
        f"list.csv: row 5: image {tmp_path}/data/images/gone.nii.gz not found (its label case_2.nii.gz is left without "
        "an image); fix the path",
    ]
    write_json(tmp_path / "list.json", {"cases": [
        {"image": "data/images/case_0.nii.gz", "label": "data/labels/case_0.nii.gz"},
        {"image": str(tmp_path / "data/images/case_1.nii.gz"), "label": "data/labels/case_1.nii.gz", "spacing": 0.9},
        {"image": "data/other/u.nii.gz"},
    ], "labels": {"1": "a", "2": "b"}})
    dataset = load_dataset(tmp_path / "list.json")
    assert len(dataset.labelled) == 2 and len(dataset.unlabelled) == 1
    assert dataset.label_table.names == ["background", "a", "b"] and dataset.case("case_1").spacing_override == (0.9,) * 3


def test_manifest_without_image_column(tmp_path):
    (tmp_path / "m.csv").write_text("scan,mask\na.nii.gz,b.nii.gz\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"m\.csv: needs an 'image' column"):
        load_dataset(tmp_path / "m.csv")


def test_pixel_size_csv_as_hc18_writes_it(tmp_path):
    for name in ("000_HC", "001_HC", "001_2HC"):
        write(tmp_path / "images" / f"{name}.png", (volume((10, 12)) % 256).astype(np.uint8))
        write(tmp_path / "masks" / f"{name}.png", np.stack([label_for((10, 12), (255,))] * 3, axis=-1), vector=True)
    (tmp_path / "pixel_size_and_hc.csv").write_text(
        "filename,pixel size(mm),head circumference (mm)\n000_HC.png,0.069135804,44.3\n001_HC.png,0.0896,56.81\n"
        "001_2HC.png,0.0896,56.8\n999_HC.png,0.1,60\n"
    , encoding="utf-8")
    dataset = load_dataset(tmp_path, subject_pattern=r"^(\d{3})")
    assert dataset.dimension == 2 and dataset.spacing_source == "pixel_size_and_hc.csv"
    assert dataset.case("000_HC").spacing_override == (0.069135804, 0.069135804)
    assert {c.case_id: c.subject_id for c in dataset.cases} == {"000_HC": "000", "001_HC": "001", "001_2HC": "001"}
    image, label = dataset.read_case(dataset.case("000_HC"))
    assert image.geometry.spacing == (0.069135804, 0.069135804) and label.geometry == image.geometry
    assert set(np.unique(label.array)) == {0, 1}
    assert dataset.problems == []


def test_2d_without_pixel_size_warns_and_subject_hint(tmp_path):
    for name in ("010_HC", "010_2HC"):
        write(tmp_path / "images" / f"{name}.png", (volume((10, 12)) % 256).astype(np.uint8))
        write(tmp_path / "labels" / f"{name}.png", label_for((10, 12), (1,)))
    dataset = load_dataset(tmp_path)
    text = " ".join(messages(dataset, "warning"))
    assert "2 2D images have no pixel size (e.g. 010_2HC.png): sizes are in pixels (1 mm assumed)" in text
    assert "share a leading number (e.g. 010...)" in text and "--subject-pattern '^(\\d+)'" in text
    write_json(tmp_path / "labels.json", {"labels": {"1": "head"}, "subject_pattern": "^(\\d{3})"})
    dataset = load_dataset(tmp_path)
    assert {c.subject_id for c in dataset.cases} == {"010"}
    with pytest.raises(DataError, match="subject pattern '\\(' is not a valid regular expression"):
        load_dataset(tmp_path, subject_pattern="(")


def test_colour_masks_fold_the_same_way_in_every_file(tmp_path):
    red, green = (200, 0, 0), (0, 200, 0)
    for i, colours in enumerate([[red, green], [green], [red]]):
        write(tmp_path / "images" / f"c{i}.png", (volume((6, 8), seed=i) % 256).astype(np.uint8))
        mask = np.zeros((6, 8, 3), np.uint8)
        for row, colour in enumerate(colours):
            mask[row, :2] = colour
        write(tmp_path / "labels" / f"c{i}.png", mask, vector=True)
    dataset = load_dataset(tmp_path)
    _, label = dataset.read_case(dataset.case("c1"))  # green only: must not become 1 on its own
    assert label.array[0, 0] == 1 and dataset.label_fold.colors == {green: 1, red: 2}
    assert dataset.read_case(dataset.case("c2"))[1].array[0, 0] == 2
    assert dataset.scan_labels() == {"c0": {0, 1, 2}, "c1": {0, 1}, "c2": {0, 2}}


def test_seg_nrrd_segments_are_matched_by_name(tmp_path):
    geometry = Geometry((12, 10, 6), (0.8, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    for i, order in enumerate([("liver", "spleen"), ("spleen", "liver")]):
        write(tmp_path / "images" / f"p{i}.nii.gz", volume(seed=i), spacing=(0.8, 0.8, 2.0))
        segments = [{"name": name, "label_value": n + 1} for n, name in enumerate(order)]
        write_image(Image(label_for(values=(1, 2)), geometry, metadata={"segments": segments}),
                    tmp_path / "labels" / f"p{i}.seg.nrrd")
    dataset = load_dataset(tmp_path)
    assert dataset.label_table.names == ["background", "liver", "spleen"]
    _, first = dataset.read_case(dataset.case("p0"))
    _, second = dataset.read_case(dataset.case("p1"))
    assert np.array_equal(first.array, label_for(values=(1, 2)))
    assert np.array_equal(second.array, label_for(values=(2, 1)))  # p1's value 1 is 'spleen' = 2


def test_dicom_series_folder_as_a_case(tmp_path):
    array = volume((4, 8, 9))
    write_dicom_series(tmp_path / "images" / "patient7", array, spacing=(0.7, 0.7, 2.5), origin=(-10.0, 20.0, 5.0))
    write(tmp_path / "labels" / "patient7.nii.gz", label_for((4, 8, 9), (1,)), spacing=(0.7, 0.7, 2.5),
          origin=(-10.0, 20.0, 5.0))
    (tmp_path / "images" / "empty_folder").mkdir()
    dataset = load_dataset(tmp_path)
    image, label = dataset.read_case(dataset.case("patient7"))
    assert np.array_equal(image.array, array) and label.array.sum() == 2 * 2 * 2
    assert messages(dataset) == ["empty_folder: skipped: a folder that holds no DICOM series"]


def test_copied_dataset_reads_the_same(tmp_path):
    folder_dataset(tmp_path / "a", 2)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    first, second = load_dataset(tmp_path / "a"), load_dataset(tmp_path / "b")
    assert [c.case_id for c in first.cases] == [c.case_id for c in second.cases]
    assert first.label_table == second.label_table


def test_declared_names_renumber_seg_nrrd_segments(tmp_path):
    geometry = Geometry((12, 10, 6), (0.8, 0.8, 2.0), (0.0, 0.0, 0.0), tuple(np.eye(3).ravel()))
    write(tmp_path / "images" / "p.nii.gz", volume(), spacing=(0.8, 0.8, 2.0))
    segments = [{"name": "Liver", "label_value": 1}, {"name": "spleen", "label_value": 2}]
    write_image(Image(label_for(values=(1, 2)), geometry, metadata={"segments": segments}), tmp_path / "labels" / "p.seg.nrrd")
    write_json(tmp_path / "labels.json", {"labels": {"1": "spleen", "2": "liver"}})
    dataset = load_dataset(tmp_path)
    _, label = dataset.read_case(dataset.case("p"))
    assert np.array_equal(label.array, label_for(values=(2, 1)))
    assert [(s["name"], s["label_value"]) for s in label.metadata["segments"]] == [("Liver", 2), ("spleen", 1)]


def test_cropped_seg_nrrd_in_a_dataset(tmp_path):
    import SimpleITK as sitk

    from tskd.data.check import check_dataset

    write(tmp_path / "images" / "p.nii.gz", volume(), spacing=(0.8, 0.8, 2.0), origin=(10.0, 20.0, 30.0))
    crop = np.zeros((2, 3, 4), np.uint8)
    crop[1, 1, 1:3] = 1
    label = sitk.GetImageFromArray(crop)
    label.SetSpacing((0.8, 0.8, 2.0))
    label.SetOrigin((10.0 + 5 * 0.8, 20.0 + 2 * 0.8, 30.0 + 3 * 2.0))  # starts at voxel (5, 2, 3)
    for key, value in {"ID": "Segment_1", "Name": "lesion", "LabelValue": "1", "Layer": "0", "Color": "1 1 0"}.items():
        label.SetMetaData(f"Segment0_{key}", value)
    (tmp_path / "labels").mkdir()
    sitk.WriteImage(label, str(tmp_path / "labels" / "p.seg.nrrd"))
    dataset = load_dataset(tmp_path)
    image, full = dataset.read_case(dataset.case("p"))
    expected = np.zeros((6, 10, 12), np.uint8)
    expected[3 + 1, 2 + 1, 5 + 1 : 5 + 3] = 1
    assert full.geometry == image.geometry and np.array_equal(full.array, expected)
    report = check_dataset(tmp_path)
    assert report.usable and report.label_names == {0: "background", 1: "lesion"} and report.label_cases == {0: 1, 1: 1}


def test_jpeg_masks_are_warned_about(tmp_path):
    write(tmp_path / "images" / "a.png", (volume((10, 12)) % 256).astype(np.uint8))
    write(tmp_path / "labels" / "a.jpg", label_for((10, 12), (255,)))
    dataset = load_dataset(tmp_path)
    assert any("labels are JPEG files" in m for m in messages(dataset, "warning"))
