"""Finding DICOM series in a folder, quietly.

GDCM (inside SimpleITK) prints an ITK warning ("GDCMSeriesFileNames ... No Series were found") to
the console for every folder it is asked about that holds no series, and dataset discovery asks
about every sub-folder. So a folder is only handed to GDCM when it holds a file that may be DICOM
(:func:`may_hold_dicom`), and ITK's global warning display is off for the call (restored after),
so that a user sees only the project's own messages. Errors are still raised: a folder GDCM
cannot scan reads as holding no series.

The one place the project asks GDCM for series (dataset discovery, :func:`tskd.data.image.is_image_path`
and the DICOM reader all use it).
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import SimpleITK as sitk

__all__ = ["may_hold_dicom", "series_files", "series_ids"]

logger = logging.getLogger(__name__)

#: Suffixes that DICOM files carry in practice; files without a suffix are common too.
_DICOM_SUFFIXES = {".dcm", ".dicom", ".ima", ".img"}
_PREAMBLE = 128  # a DICOM Part 10 file: 128 bytes of preamble, then b"DICM"


def _looks_dicom(path: Path) -> bool:
    suffix = path.suffix.lower()
    if suffix in _DICOM_SUFFIXES or suffix == "" or suffix[1:].isdigit():  # "IM0001", "1.2.840.1"
        return True
    try:
        with path.open("rb") as handle:
            handle.seek(_PREAMBLE)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def may_hold_dicom(folder: str | Path) -> bool:
    """True when ``folder`` holds a file that may be DICOM (by suffix or the ``DICM`` marker).

    Cheap: it looks at the folder's own files (not sub-folders), and reads 4 bytes of a file only
    when its suffix is one of another format (a ``.txt`` with a DICOM marker still counts).
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return False
    return any(entry.is_file() and not entry.name.startswith(".") and _looks_dicom(entry) for entry in entries)


@contextmanager
def _itk_warnings_off() -> Iterator[None]:
    shown = sitk.ProcessObject.GetGlobalWarningDisplay()
    sitk.ProcessObject.SetGlobalWarningDisplay(False)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalWarningDisplay(shown)


def series_ids(folder: str | Path) -> list[str]:
    """The DICOM series UIDs in ``folder`` (not its sub-folders); ``[]`` when there are none.

    Raises:
        RuntimeError: GDCM failed on a folder that does hold DICOM-like files (the reader turns it
            into a :class:`~tskd.errors.DataError` naming the folder).
    """
    if not may_hold_dicom(folder):
        return []
    with _itk_warnings_off():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or [])


def series_files(folder: str | Path, uid: str) -> list[str]:
    """The files of series ``uid`` in ``folder``, in GDCM's slice order."""
    with _itk_warnings_off():
        return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid))
