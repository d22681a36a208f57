"""Slicer-side tests: import ``SlicerTSKDLib`` from the module folder, as Slicer would."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
MODULE_DIR = REPO_ROOT / "SlicerTSKD"

for folder in (MODULE_DIR, Path(__file__).resolve().parent):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
