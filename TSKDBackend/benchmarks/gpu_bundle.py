"""Prepare what the GPU check needs on a GPU machine that has no internet: wheels and the HC18 subset.

The GPU machine (docs/benchmarks.md, "GPU check") has Python 3.12 with torch, transformers, peft,
accelerate, onnx, onnxruntime, numpy, scipy and the rest, but not the packages in ``PACKAGES``.
This script, run where pip reaches the package index:

1. ``pip download``s them (versions from ``TSKDBackend/constraints.txt``) for CPython 3.12 on
   manylinux x86-64 into ``.whl/`` (no dependencies: the machine has them);
2. re-compresses each wheel with LZMA when that is smaller (SimpleITK: 53 MB -> 29 MB; pip reads
   such wheels, they are zip files) so that everything carried fits the device's 64 MiB;
3. copies ``--images`` HC18 images with their masks and pixel sizes into ``.gpu-data/hc18/``
   (the first ones by name, whole subjects; the train section uses 80 of them as labelled);
4. prints the sizes and fails when the bundle exceeds ``--limit-mib`` (default 55) or the bundle
   plus the working tree exceeds what travels (64 MiB less a margin).

Usage (from the repository root; ``make gpu-bundle``)::

    python TSKDBackend/benchmarks/gpu_bundle.py [--hc18 ../shared/data/hc18] [--images 100]

Both folders are ignored by git. On the GPU machine (README.md, "GPU check")::

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:TSKDBackend/src python3 TSKDBackend/benchmarks/gpu_check.py --out $OUT/gpu_check.json
"""

from __future__ import annotations

import argparse
import csv
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONSTRAINTS = REPO / "TSKDBackend" / "constraints.txt"
WHEELS = REPO / ".whl"
DATA = REPO / ".gpu-data"
SHARED_HC18 = REPO.parent / "shared" / "data" / "hc18"
#: What the GPU check imports that the GPU machine lacks (docs: /work/.library/device/KINDS.md's list).
#: fastapi, uvicorn and python-multipart are the service's only: the check never imports it.
PACKAGES = ("monai", "diffusers", "simpleitk", "importlib_metadata")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
DEVICE_LIMIT_MIB = 64  # what travels to the device: the working tree and every carried path
MARGIN_MIB = 2
MIB = 2**20

__all__ = ["pinned_versions", "download_command", "recompress", "copy_hc18", "tree_bytes", "main"]


def pinned_versions(names: tuple[str, ...] = PACKAGES, constraints: Path = CONSTRAINTS) -> dict[str, str]:
    """``name==version`` pins of ``names`` from the constraints file (the versions CI tests)."""
    pins = {}
    for line in constraints.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\s*([A-Za-z0-9_.-]+)==(\S+)", line)
        if match:
            pins[re.sub(r"[-_.]+", "_", match.group(1).lower())] = match.group(2)
    missing = [n for n in names if re.sub(r"[-_.]+", "_", n.lower()) not in pins]
    if missing:
        raise SystemExit(f"{constraints}: no '==' pin for {', '.join(missing)}")
    return {n: pins[re.sub(r"[-_.]+", "_", n.lower())] for n in names}


def download_command(pins: dict[str, str], dest: Path, python: str = sys.executable) -> list[str]:
    """The ``pip download`` for CPython 3.12 on manylinux x86-64, no dependencies, binary wheels only."""
    command = [python, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
               "--implementation", "cp", "-c", str(CONSTRAINTS), "-d", str(dest)]
    for platform in PLATFORMS:
        command += ["--platform", platform]
    return command + [f"{name}=={version}" for name, version in pins.items()]


def _wheel_of(folder: Path, name: str, version: str) -> list[Path]:
    """The wheels of ``name==version`` in ``folder`` (wheel names spell the project with underscores)."""
    prefix = f"{re.sub(r'[-_.]+', '_', name.lower())}-{version}-"
    return [w for w in folder.glob("*.whl") if w.name.lower().startswith(prefix)]


def _is_lzma(wheel: Path) -> bool:
    with zipfile.ZipFile(wheel) as archive:
        return all(info.compress_type == zipfile.ZIP_LZMA for info in archive.infolist() if info.file_size)


def recompress(wheel: Path) -> tuple[int, int]:
    """Rewrite ``wheel`` with LZMA-compressed members when that is smaller (same files, same RECORD).

    Returns the sizes before and after (equal when it was already LZMA or did not shrink).
    """
    before = wheel.stat().st_size
    if _is_lzma(wheel):
        return before, before
    tmp = wheel.with_name(wheel.name + ".tmp")
    with zipfile.ZipFile(wheel) as source, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as target:
        for info in source.infolist():
            copy = zipfile.ZipInfo(info.filename, date_time=info.date_time)
            copy.external_attr = info.external_attr
            copy.compress_type = zipfile.ZIP_LZMA
            target.writestr(copy, source.read(info))
    if tmp.stat().st_size < before:
        tmp.replace(wheel)
    else:
        tmp.unlink()
    return before, wheel.stat().st_size


def copy_hc18(source: Path, dest: Path, images: int) -> int:
    """Copy the first ``images`` HC18 images (by name, always whole subjects: ``010_HC`` and
    ``010_2HC`` together), their masks and their rows of ``pixel_size_and_hc.csv``. Returns bytes."""
    names = sorted(p.name for p in (source / "images").iterdir() if p.suffix.lower() == ".png")
    if not names:
        raise SystemExit(f"{source / 'images'}: no PNG images (is --hc18 the HC18 folder?)")
    chosen: list[str] = []
    for name in names:
        if len(chosen) >= images and name[:3] != chosen[-1][:3]:
            break
        chosen.append(name)
    if dest.exists():
        shutil.rmtree(dest)
    for folder in ("images", "masks"):
        (dest / folder).mkdir(parents=True)
        for name in chosen:
            if (source / folder / name).is_file():
                shutil.copy2(source / folder / name, dest / folder / name)
    table = source / "pixel_size_and_hc.csv"
    if table.is_file():
        with table.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        keep = set(chosen)
        with (dest / table.name).open("w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([rows[0]] + [r for r in rows[1:] if r and r[0] in keep])
    return sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())


def tree_bytes(repo: Path = REPO) -> int:
    """Bytes of what git would send: tracked files and untracked files it does not ignore."""
    listed = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            capture_output=True, check=True).stdout.decode().split("\0")
    return sum((repo / name).stat().st_size for name in listed if name and (repo / name).is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hc18", type=Path, default=SHARED_HC18, help=f"HC18 folder (default: {SHARED_HC18})")
    parser.add_argument("--images", type=int, default=100,
                        help="HC18 images to carry (default 100: 80 labelled for training, the rest validation)")
    parser.add_argument("--limit-mib", type=float, default=55.0, help="fail when the bundle is larger (default 55)")
    parser.add_argument("--wheels", type=Path, default=WHEELS, help=f"wheel folder (default: {WHEELS})")
    parser.add_argument("--data", type=Path, default=DATA, help=f"data folder (default: {DATA})")
    args = parser.parse_args(argv)

    pins = pinned_versions()
    args.wheels.mkdir(parents=True, exist_ok=True)
    stale = [w for w in args.wheels.glob("*.whl") if not any(w in _wheel_of(args.wheels, n, v) for n, v in pins.items())]
    for wheel in stale:  # two versions of one package would stop the offline install
        wheel.unlink()
    missing = {n: v for n, v in pins.items() if not _wheel_of(args.wheels, n, v)}
    if missing:  # a wheel already here (and re-compressed) is kept: pip would fetch it again
        command = download_command(missing, args.wheels)
        print("$ " + " ".join(command), flush=True)
        subprocess.run(command, check=True)
    wheels = sorted(args.wheels.glob("*.whl"))
    for wheel in wheels:
        before, after = recompress(wheel)
        print(f"{wheel.name:<80} {before / MIB:6.1f} MiB" + (f" -> {after / MIB:.1f} MiB (LZMA)" if after != before else ""),
              flush=True)
    wheel_bytes = sum(w.stat().st_size for w in wheels)
    data_bytes = copy_hc18(args.hc18, args.data / "hc18", args.images)
    bundle = wheel_bytes + data_bytes
    tree = tree_bytes()
    print(f"wheels {wheel_bytes / MIB:.1f} MiB in {args.wheels}; HC18 subset {data_bytes / MIB:.1f} MiB in "
          f"{args.data / 'hc18'}; bundle {bundle / MIB:.1f} MiB; with the working tree ({tree / MIB:.1f} MiB) "
          f"{(bundle + tree) / MIB:.1f} MiB of the device's {DEVICE_LIMIT_MIB} MiB")
    if bundle > args.limit_mib * MIB or bundle + tree > (DEVICE_LIMIT_MIB - MARGIN_MIB) * MIB:
        print(f"error: too large to carry: the bundle may be at most {args.limit_mib:.0f} MiB and, with the working "
              f"tree, {DEVICE_LIMIT_MIB - MARGIN_MIB} MiB; carry fewer images (--images) or fewer packages",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
