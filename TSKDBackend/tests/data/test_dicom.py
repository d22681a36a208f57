"""Probing folders for DICOM series prints nothing to the console (issue 16, item 10) and still finds
series, whatever their files are called."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from tskd.data.dicom import may_hold_dicom, series_files, series_ids
from tskd.data.discover import discover_folder
from tskd.data.image import is_image_path
from tests.data.datamaker import volume, write, write_dicom_series

UID = "1.2.826.0.1.3680043.2.1125.1.7"


def _no_itk_noise(capfd) -> None:
    err = capfd.readouterr().err
    assert "GDCM" not in err and "No Series" not in err and "WARNING" not in err, err


def test_folders_without_dicom_are_not_handed_to_gdcm_and_print_nothing(tmp_path, capfd):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not an image", encoding="utf-8")
    pictures = tmp_path / "pictures"
    write(pictures / "a.png", np.zeros((8, 8), np.uint8))
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder in (notes, pictures, empty):
        assert not may_hold_dicom(folder)
        assert series_ids(folder) == []
        assert not is_image_path(folder)
    _no_itk_noise(capfd)


def test_a_folder_gdcm_is_asked_about_prints_nothing_either(tmp_path, capfd):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "slice.dcm").write_bytes(b"not dicom at all")  # DICOM by name, so GDCM is asked
    assert may_hold_dicom(broken)
    assert not is_image_path(broken)
    _no_itk_noise(capfd)
    assert sitk.ProcessObject.GetGlobalWarningDisplay()  # switched back on after the probe


def test_series_found_by_suffix_by_marker_and_without_suffix(tmp_path):
    array = volume((3, 8, 9))
    named = write_dicom_series(tmp_path / "named", array, series_uid=UID)
    assert series_ids(named) == [UID]
    assert len(series_files(named, UID)) == 3

    for name, suffix in (("marker", ".txt"), ("bare", "")):  # renamed: found by the DICM marker / no suffix
        folder = tmp_path / name
        folder.mkdir()
        for k, path in enumerate(sorted(named.iterdir())):
            (folder / f"IM{k:04d}{suffix}").write_bytes(path.read_bytes())
        assert may_hold_dicom(folder), name
        assert series_ids(folder) == [UID], name


def test_discovery_of_a_dataset_with_side_folders_is_quiet(tmp_path, capfd):
    root = tmp_path / "dataset"
    for k in range(2):
        image = volume((4, 8, 8))
        write(root / "images" / f"case{k}.nii.gz", image)
        write(root / "labels" / f"case{k}.nii.gz", (image > image.mean()).astype(np.uint8))
    (root / "images" / "thumbnails").mkdir()
    (root / "images" / "thumbnails" / "case0.txt").write_text("x", encoding="utf-8")
    series = volume((3, 8, 8))
    write_dicom_series(root / "images" / "case2", series, series_uid=UID)
    write(root / "labels" / "case2.nii.gz", (series > series.mean()).astype(np.uint8))
    discovery = discover_folder(root)
    names = sorted(c.case_id for c in discovery.candidates)
    assert "case2" in names and "thumbnails" not in names, names
    _no_itk_noise(capfd)
