"""predict_files: label maps aligned with their inputs in every format, failures isolated, inputs kept."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from tests.data.datamaker import write, write_dicom_series
from tests.runtime.packages import make_volume, torch_reference
from tskd.data.image import read_image
from tskd.errors import ConfigError, DataError
from tskd.inference import load_slice_model, output_path_for, parse_roi, predict_files
from tskd.runtime import StudentPackage

# an oblique direction (rotation about k by 30 degrees), a shifted origin and anisotropic voxels
C, S = np.cos(np.pi / 6), np.sin(np.pi / 6)
DIRECTION = (C, -S, 0.0, S, C, 0.0, 0.0, 0.0, 1.0)
SPACING, ORIGIN = (0.7, 1.3, 3.0), (-95.5, 130.25, -40.0)


@pytest.fixture(scope="module")
def onnx_model(axis1_package):
    return load_slice_model(axis1_package[0], threads=1)


def test_nifti_prediction_keeps_geometry_and_matches_torch(axis1_package, onnx_model, tmp_path):
    folder, torch_net = axis1_package
    volume = make_volume((9, 23, 61), seed=7)
    image = write(tmp_path / "in" / "case_01.nii.gz", volume, SPACING, ORIGIN, DIRECTION)
    package = StudentPackage.load(folder)
    reference = torch_reference(torch_net, volume, values=[0, 1, 4], input_size=32, axis=1,
                                normalization=package.normalization)

    torch_results = predict_files(folder, image, tmp_path / "torch", backend="torch")
    onnx_results = predict_files(onnx_model, image, tmp_path / "onnx")
    for results, exact in ((torch_results, True), (onnx_results, False)):
        (result,) = results
        assert result.ok and result.output.name == "case_01.nii.gz" and result.shape == volume.shape
        out = sitk.ReadImage(str(result.output))
        assert out.GetSpacing() == pytest.approx(SPACING) and out.GetOrigin() == pytest.approx(ORIGIN)
        assert out.GetDirection() == pytest.approx(DIRECTION)
        labels = sitk.GetArrayFromImage(out)
        assert labels.dtype == np.uint8
        if exact:
            np.testing.assert_array_equal(labels, reference)
        else:
            assert np.mean(labels == reference) > 0.999
    assert set(np.unique(reference)) == {0, 1, 4}


def test_a_folder_of_mixed_inputs_with_one_unreadable(onnx_model, tmp_path):
    inputs = tmp_path / "inputs"
    write(inputs / "ct.nrrd", make_volume((5, 20, 24)), (0.8, 0.8, 2.0), (1.0, 2.0, 3.0))
    write(inputs / "us.png", (make_volume((1, 30, 40))[0] % 256).astype(np.uint8))
    write_dicom_series(inputs / "series", make_volume((4, 16, 18), seed=3))
    (inputs / "broken.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    (inputs / "notes.txt").write_text("not an image", encoding="utf-8")
    seen = []
    results = predict_files(onnx_model, inputs, tmp_path / "out", on_result=lambda i, n, r: seen.append((i, n)))
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    by_name = {r.input.name: r for r in results}
    assert set(by_name) == {"ct.nrrd", "us.png", "series", "broken.nii.gz"}
    assert not by_name["broken.nii.gz"].ok and "broken.nii.gz" in by_name["broken.nii.gz"].error
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["ct.nrrd", "series.nii.gz", "us.png"]
    for name, source in (("ct.nrrd", inputs / "ct.nrrd"), ("us.png", inputs / "us.png"),
                         ("series.nii.gz", inputs / "series")):
        image, label = read_image(source), sitk.ReadImage(str(tmp_path / "out" / name))
        array = sitk.GetArrayFromImage(label)
        assert array.shape == image.array.shape  # 2D stays 2D
        assert label.GetSpacing() == pytest.approx(image.geometry.spacing)
        assert label.GetOrigin() == pytest.approx(image.geometry.origin)
        assert label.GetDirection() == pytest.approx(image.geometry.direction)
        assert set(np.unique(array)) <= {0, 1, 4}


def test_inputs_are_never_overwritten(onnx_model, tmp_path):
    volume = make_volume((3, 16, 16))
    path = write(tmp_path / "case.nii.gz", volume)
    before = path.read_bytes()
    (result,) = predict_files(onnx_model, tmp_path, tmp_path)  # output folder = input folder, same format
    assert not result.ok and "is an input image" in result.error
    (result,) = predict_files(onnx_model, path, path)
    assert not result.ok and path.read_bytes() == before
    twins = tmp_path / "twins"
    write(twins / "a.nii.gz", volume)
    write(twins / "a.nrrd", volume)
    results = predict_files(onnx_model, twins, tmp_path / "o", format="nii.gz")
    assert results[0].ok and not results[1].ok and "already written" in results[1].error


def test_seg_nrrd_output_loads_in_slicer_with_names_and_colours(onnx_model, tmp_path):
    from tests.data.test_seg_nrrd import slicer_read

    path = write(tmp_path / "case.nii.gz", make_volume((6, 20, 30)), SPACING, ORIGIN, DIRECTION)
    (result,) = predict_files(onnx_model, path, tmp_path / "case_pred.seg.nrrd")
    assert result.ok and result.output.name == "case_pred.seg.nrrd"
    segments, layers = slicer_read(result.output)
    assert layers == 1
    assert segments == [("liver", 1, (1.0, 0.0, 0.0)), ("tumour", 4, (0.0, 0.5, 1.0))]
    back = read_image(result.output, kind="label")
    assert back.geometry.mismatch(read_image(path).geometry) is None
    assert set(np.unique(back.array)) <= {0, 1, 4}


def test_roi_from_the_command_line_form(onnx_model, tmp_path):
    path = write(tmp_path / "c.nii.gz", make_volume((6, 20, 30)))
    roi = parse_roi("1:4, :15 ,10:")
    assert roi == [(1, 4), (None, 15), (10, None)]
    (result,) = predict_files(onnx_model, path, tmp_path / "o", roi=roi)
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(result.output)))
    assert not labels[:1].any() and not labels[4:].any() and not labels[:, 15:].any() and not labels[:, :, :10].any()
    (bad,) = predict_files(onnx_model, path, tmp_path / "o2", roi=[(1, 4), (30, 40), (0, 5)])
    assert not bad.ok and "--roi does not fit" in bad.error
    for text in ("1:4,5", "a:b,1:2,3:4", "1:2"):
        if text == "1:2":
            with pytest.raises(ConfigError, match="give 3 ranges"):
                parse_roi(text)
        else:
            with pytest.raises(ConfigError):
                parse_roi(text)


def test_output_names(tmp_path):
    dicom = write_dicom_series(tmp_path / "series", np.zeros((2, 4, 4), np.int16))
    out = tmp_path / "out"
    assert output_path_for(tmp_path / "a.nii.gz", out, "same", single=False) == out / "a.nii.gz"
    assert output_path_for(tmp_path / "a.jpg", out, "same", single=False) == out / "a.png"
    assert output_path_for(dicom, out, "same", single=True) == out / "series.nii.gz"
    assert output_path_for(tmp_path / "a.mha", out, "seg.nrrd", single=False) == out / "a.seg.nrrd"
    assert output_path_for(tmp_path / "a.mha", tmp_path / "x.nrrd", "nrrd", single=True) == tmp_path / "x.nrrd"
    with pytest.raises(ConfigError, match="several inputs need an output folder"):
        output_path_for(tmp_path / "a.mha", tmp_path / "x.nrrd", "same", single=False)
    with pytest.raises(ConfigError, match="make them agree"):
        output_path_for(tmp_path / "a.mha", tmp_path / "x.nrrd", "nii.gz", single=True)


def test_missing_inputs_and_models(onnx_model, tmp_path):
    with pytest.raises(DataError, match="not found"):
        predict_files(onnx_model, tmp_path / "nothing", tmp_path / "o")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no image files"):
        predict_files(onnx_model, tmp_path / "empty", tmp_path / "o")
    with pytest.raises(ConfigError, match="backend"):
        load_slice_model(tmp_path, backend="tensorflow")


@pytest.mark.shared_data
def test_real_ultrasound_pictures_predict_and_evaluate(axis1_package, onnx_model, tmp_path):
    """Two HC18 pictures: predictions keep the picture's grid and score against the real masks in mm."""
    from tests.conftest import shared_dataset
    from tskd.evaluation.evaluate import evaluate_files

    hc18 = shared_dataset("hc18")
    images = tmp_path / "images"
    images.mkdir()
    for name in sorted(p.name for p in (hc18 / "images").iterdir())[:2]:
        (images / name).symlink_to(hc18 / "images" / name)
    results = predict_files(onnx_model, images, tmp_path / "pred")
    assert all(r.ok for r in results) and all(len(r.shape) == 2 for r in results)
    report = evaluate_files(tmp_path / "pred", hc18 / "masks", surface=False)
    assert len(report.cases) == 2 and len(report.missing_predictions) > 100  # the other masks, reported
    assert report.spacing_source == "pixel_size_and_hc.csv"  # pixel sizes in mm, as the dataset declares them
    assert all(0.0 <= case.dice[1] <= 1.0 for case in report.cases)
