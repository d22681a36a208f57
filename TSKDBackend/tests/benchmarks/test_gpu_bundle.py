"""The GPU bundle: pins from constraints.txt, the pip download command, LZMA wheels that pip still
installs, the HC18 subset by whole subjects, and the size limit. Nothing here reaches the internet:
the wheels are made here and the install is ``--no-index``."""

from __future__ import annotations

import base64
import csv
import hashlib
import importlib.util
import random
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bundle():
    spec = importlib.util.spec_from_file_location("gpu_bundle", BENCHMARKS / "gpu_bundle.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_wheel(folder: Path, name: str, version: str, payload: str = "") -> Path:
    """A minimal pure-Python wheel of package ``name`` whose module holds ``VALUE`` and ``payload``."""
    files = {
        f"{name}/__init__.py": f"VALUE = {version!r}\nPAYLOAD = {payload!r}\n".encode(),
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
              for path, data in files.items()] + [f"{name}-{version}.dist-info/RECORD,,"]
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return wheel


def make_hc18(root: Path, names: list[str]) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rows = [["filename", "pixel size(mm)", "head circumference (mm)"]]
    for index, name in enumerate(names):
        Image.fromarray(np.full((6, 8), index, np.uint8)).save(root / "images" / name)
        Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(root / "masks" / name)
        rows.append([name, f"0.{index + 1}", "50"])
    with (root / "pixel_size_and_hc.csv").open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return root


def test_pins_and_download_command(bundle, tmp_path: Path) -> None:
    pins = bundle.pinned_versions()
    assert set(pins) == set(bundle.PACKAGES) and all(pins.values())
    command = bundle.download_command(pins, tmp_path, python="python3")
    assert command[:4] == ["python3", "-m", "pip", "download"]
    for flag in ("--no-deps", "--only-binary=:all:"):
        assert flag in command
    assert command[command.index("--python-version") + 1] == "3.12"
    assert command[command.index("--implementation") + 1] == "cp"
    assert command[command.index("-c") + 1].endswith("constraints.txt")
    assert {command[i + 1] for i, arg in enumerate(command) if arg == "--platform"} >= {
        "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"}
    assert command[-len(pins):] == [f"{n}=={v}" for n, v in pins.items()]
    # the service's packages stay behind: the check never imports them
    assert not {"fastapi", "uvicorn", "python-multipart"} & set(pins)


def test_lzma_wheel_is_smaller_and_pip_installs_it(bundle, tmp_path: Path) -> None:
    block = random.Random(0).randbytes(20000).hex()  # repeats farther apart than deflate's 32 KiB window
    wheel = make_wheel(tmp_path, "tinypkg", "1.0", payload=block * 3)
    before, after = bundle.recompress(wheel)
    assert after < before and after == wheel.stat().st_size
    with zipfile.ZipFile(wheel) as archive:
        assert {info.compress_type for info in archive.infolist()} == {zipfile.ZIP_LZMA}
    assert bundle.recompress(wheel) == (after, after)  # already LZMA: left alone
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(site), str(wheel)], check=True)
    done = subprocess.run([sys.executable, "-c", "import tinypkg; print(tinypkg.VALUE, len(tinypkg.PAYLOAD))"],
                          capture_output=True, text=True, env={"PYTHONPATH": str(site)}, check=True)
    assert done.stdout.split() == ["1.0", "120000"]


def test_hc18_subset_keeps_whole_subjects(bundle, tmp_path: Path) -> None:
    source = make_hc18(tmp_path / "hc18", ["000_HC.png", "001_HC.png", "002_HC.png", "002_2HC.png", "003_HC.png"])
    (source / "images" / ".DS_Store").write_bytes(b"x")
    size = bundle.copy_hc18(source, tmp_path / "out", images=3)
    copied = sorted(p.name for p in (tmp_path / "out" / "images").iterdir())
    assert copied == ["000_HC.png", "001_HC.png", "002_2HC.png", "002_HC.png"]  # 002's second frame comes along
    assert sorted(p.name for p in (tmp_path / "out" / "masks").iterdir()) == copied
    with (tmp_path / "out" / "pixel_size_and_hc.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][0] == "filename" and sorted(r[0] for r in rows[1:]) == copied
    assert size == sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())


def test_main_measures_the_bundle_and_refuses_one_too_large(bundle, tmp_path: Path, capsys) -> None:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    for name, version in bundle.pinned_versions().items():  # present: nothing is downloaded
        make_wheel(wheels, name.lower(), version)
    make_wheel(wheels, "monai", "0.0.1")  # another version: removed, or the offline install would stop
    source = make_hc18(tmp_path / "hc18", [f"{i:03d}_HC.png" for i in range(6)])
    common = ["--hc18", str(source), "--images", "4", "--wheels", str(wheels), "--data", str(tmp_path / "data")]
    assert bundle.main(common) == 0
    out = capsys.readouterr().out
    assert "bundle" in out and "MiB of the device's 64 MiB" in out and "$ " not in out
    assert not (wheels / "monai-0.0.1-py3-none-any.whl").exists()
    assert len(list((tmp_path / "data" / "hc18" / "images").iterdir())) == 4
    assert bundle.main(common + ["--limit-mib", "0.001"]) == 1
    assert "too large to carry" in capsys.readouterr().err
