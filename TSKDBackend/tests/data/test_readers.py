"""Reading every supported format, colour handling and damaged files (tskd.data.readers)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk
from tests.data.datamaker import label_for, volume, write, write_dicom_series

from tskd.data.image import Geometry, Image, read_image, write_image
from tskd.data.readers import read_image_info
from tskd.errors import DataError

SPACING = (0.8, 0.6, 2.5)
ORIGIN = (-12.0, 30.5, 7.25)
DIRECTION = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha", ".mhd"])
def test_3d_formats_keep_values_and_geometry(tmp_path, suffix):
    array = volume()
    path = write(tmp_path / f"img{suffix}", array, SPACING, ORIGIN, DIRECTION)
    image = read_image(path)
    assert np.array_equal(image.array, array) and image.array.dtype == np.int16
    assert image.geometry.size == (12, 10, 6)
    assert np.allclose(image.geometry.spacing, SPACING) and np.allclose(image.geometry.origin, ORIGIN)
    assert np.allclose(image.geometry.direction, DIRECTION)
    info = read_image_info(path)
    assert info.geometry.mismatch(image.geometry) is None and info.components == 1


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".jpg"])
def test_2d_formats(tmp_path, suffix):
    array = (volume((10, 12)) // 2).astype(np.uint8)
    path = write(tmp_path / f"img{suffix}", array)
    image = read_image(path)
    assert image.dimension == 2 and image.array.shape == (10, 12)
    if suffix == ".jpg":  # lossy
        assert np.abs(image.array.astype(int) - array).mean() < 10
    else:
        assert np.array_equal(image.array, array)


def test_colour_image_becomes_luminance(tmp_path):
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200
    rgb[1, 1] = (10, 20, 30)
    path = write(tmp_path / "colour.png", rgb, vector=True)
    image = read_image(path)
    assert image.array.shape == (4, 5) and image.array.dtype == np.uint8
    assert image.array[0, 0] == round(0.299 * 200)
    assert image.array[1, 1] == round(0.299 * 10 + 0.587 * 20 + 0.114 * 30)


def test_rgb_mask_0_255_folds_to_0_1(tmp_path):
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[2:4, 3:6] = 255
    label = read_image(write(tmp_path / "mask.png", rgb, vector=True), kind="label")
    assert set(np.unique(label.array)) == {0, 1}
    assert label.array[2, 3] == 1 and label.array.sum() == 6
    assert label.metadata["rgb_folded"] == {"255,255,255": 1}


def test_grey_png_mask_0_255_folds_and_integer_labels_stay(tmp_path):
    grey = np.zeros((6, 7), np.uint8)
    grey[1:3, 1:3] = 255
    assert set(np.unique(read_image(write(tmp_path / "m.png", grey), kind="label").array)) == {0, 1}
    multi = label_for((6, 7), values=(1, 2))
    assert set(np.unique(read_image(write(tmp_path / "l.png", multi), kind="label").array)) == {0, 1, 2}
    # volumes keep their values exactly, even 255
    vol = np.zeros((2, 3, 4), np.uint8)
    vol[0, 0, 0] = 255
    assert read_image(write(tmp_path / "v.nii.gz", vol), kind="label").array.max() == 255


def test_float_labels_with_integer_values_become_integers(tmp_path):
    label = label_for().astype(np.float32)
    image = read_image(write(tmp_path / "l.nii.gz", label), kind="label")
    assert image.array.dtype == np.uint8 and np.array_equal(image.array, label)
    label[0, 0, 0] = 0.5
    with pytest.raises(DataError, match="non-integer values"):
        read_image(write(tmp_path / "bad.nii.gz", label), kind="label")


def test_dicom_series_folder(tmp_path):
    array = volume((5, 8, 9))
    folder = write_dicom_series(tmp_path / "ct", array, spacing=(0.7, 0.7, 2.5), origin=(-10.0, 20.0, 5.0))
    image = read_image(folder)
    assert np.array_equal(image.array, array)
    assert np.allclose(image.geometry.spacing, (0.7, 0.7, 2.5)) and np.allclose(image.geometry.origin, (-10, 20, 5))
    assert read_image_info(folder).geometry.size == (9, 8, 5)


def test_dicom_folder_with_two_series_is_refused(tmp_path):
    folder = tmp_path / "mixed"
    write_dicom_series(folder / "a", volume((3, 8, 9)), series_uid="1.2.3.4.1")
    write_dicom_series(folder / "b", volume((2, 8, 9)), series_uid="1.2.3.4.2")
    for path in list((folder / "b").iterdir()):
        path.rename(folder / "a" / ("b_" + path.name))
    with pytest.raises(DataError, match=r"holds 2 DICOM series: 1\.2\.3\.4\.1 \(3 files\); 1\.2\.3\.4\.2 \(2 files\)"):
        read_image(folder / "a")


def test_vector_image_that_is_not_colour_is_refused(tmp_path):
    array = np.random.default_rng(0).random((4, 5, 6, 2)).astype(np.float32)
    path = write(tmp_path / "vec.nii.gz", array, vector=True)
    with pytest.raises(DataError, match="only single-channel images are supported"):
        read_image(path)
    assert "single-channel" in read_image_info(path).channel_problem()


def test_4d_image_is_refused_but_one_volume_4d_is_read(tmp_path):
    four = sitk.JoinSeries([sitk.GetImageFromArray(volume((3, 4, 5))) for _ in range(2)])
    sitk.WriteImage(four, str(tmp_path / "t.nii.gz"))
    with pytest.raises(DataError, match="4D image with 2 volumes"):
        read_image(tmp_path / "t.nii.gz")
    one = sitk.JoinSeries([sitk.GetImageFromArray(volume((3, 4, 5)))])
    sitk.WriteImage(one, str(tmp_path / "one.nii.gz"))
    assert read_image(tmp_path / "one.nii.gz").array.shape == (3, 4, 5)
    assert read_image_info(tmp_path / "one.nii.gz").dimension == 3


def test_empty_file(tmp_path):
    (tmp_path / "empty.nii.gz").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.nii\.gz: the file is empty \(0 bytes\)"):
        read_image(tmp_path / "empty.nii.gz")
    with pytest.raises(DataError, match="the file is empty"):
        read_image_info(tmp_path / "empty.nii.gz")


def test_garbage_file_names_the_file_without_traceback(tmp_path):
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not a png at all")
    with pytest.raises(DataError) as info:
        read_image(path)
    message = str(info.value)
    assert message == f"{path}: cannot be read as an image: unknown or damaged file format"
    assert "sitk" not in message and ".cxx" not in message


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".png"])
def test_truncated_files_are_reported(tmp_path, suffix):
    array = volume((8, 20, 24)) if suffix != ".png" else (volume((40, 48)) % 256).astype(np.uint8)
    path = write(tmp_path / f"full{suffix}", array)
    data = path.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(DataError, match=r"cut\.\S+: cannot be read as an image: .*(truncated|damaged|Error|trouble)"):
        read_image(cut)


def test_truncated_gzip_inside_nifti_is_not_zero_filled(tmp_path):
    """ITK pads a truncated .nii.gz with zeros; the reader must notice."""
    path = write(tmp_path / "full.nii.gz", volume((8, 20, 24)))
    raw = gzip.decompress(path.read_bytes())
    (tmp_path / "short.nii.gz").write_bytes(gzip.compress(raw[: len(raw) - 100]))
    with pytest.raises(DataError, match=r"truncated file \(\d+ of \d+ bytes"):
        read_image(tmp_path / "short.nii.gz")


def test_write_image_round_trip_formats(tmp_path):
    geometry = Geometry((12, 10, 6), SPACING, ORIGIN, DIRECTION)
    label = Image(label_for(), geometry)
    for suffix in (".nii.gz", ".nrrd", ".mha", ".seg.nrrd"):
        back = read_image(write_image(label, tmp_path / f"out{suffix}"), kind="label")
        assert np.array_equal(back.array, label.array), suffix
        assert geometry.mismatch(back.geometry, tolerance=1e-6) is None, suffix
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_kind_must_be_known(tmp_path):
    from tskd.data.readers import read_sitk_image

    with pytest.raises(ValueError, match="kind must be one of"):
        read_sitk_image(write(tmp_path / "a.nii.gz", volume()), kind="mask")


def test_write_mhd_pair_and_refuse_fractions_in_png(tmp_path):
    image = Image(volume(), Geometry((12, 10, 6), SPACING, ORIGIN, DIRECTION))
    write_image(image, tmp_path / "out.mhd")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mhd", "out.zraw"]
    assert np.array_equal(read_image(tmp_path / "out.mhd").array, image.array)
    flat = Image(np.full((4, 5), 0.5, np.float32), Geometry.default((4, 5)))
    with pytest.raises(DataError, match=r"only whole values 0\.\.65535 can be stored in \.png"):
        write_image(flat, tmp_path / "f.png")
