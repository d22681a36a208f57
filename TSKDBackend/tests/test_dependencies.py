"""The backend's declared torch range holds the versions it is run with: CI's pin and the GPU machine's."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

BACKEND = Path(__file__).resolve().parents[1]


def _requirement(name: str) -> Requirement:
    project = tomllib.loads((BACKEND / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = [Requirement(r) for r in project["dependencies"] if Requirement(r).name.lower() == name]
    assert len(found) == 1, f"{name} is declared {len(found)} times"
    return found[0]


def _pinned(name: str) -> str:
    text = (BACKEND / "constraints.txt").read_text(encoding="utf-8")
    match = re.search(rf"^{re.escape(name)}==(\S+)", text, flags=re.MULTILINE | re.IGNORECASE)
    assert match, f"constraints.txt pins no {name}"
    return match.group(1)


def test_torch_range_holds_ci_pin_and_the_gpu_machines_build() -> None:
    torch = _requirement("torch")
    accepts = lambda version: torch.specifier.contains(Version(version), prereleases=False)  # noqa: E731
    pin = _pinned("torch")  # CI's version
    assert accepts(pin) and accepts(f"{pin}+cpu") and accepts(f"{pin}+cu126")
    assert accepts("2.11.0+cu130")  # the GPU check's machine (docs/benchmarks.md, GPU section)
    assert not accepts("2.10.0") and not accepts("2.4.1")  # refused: untested, and monai 1.6 needs 2.8
