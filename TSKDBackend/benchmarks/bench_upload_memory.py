"""Benchmark: the true peak memory of checking an uploaded case, against what the server counts.

1. For each kind of file (an int16 ``.nii.gz`` image alone, with a uint8 / int16 / float32 label,
   a float32 ``.nrrd`` image that is converted when stored), a fresh process runs the service's
   check (:func:`tskd.service.casefiles.check_case`) on a 512 x 512 x N volume while a thread samples
   its RSS every 2 ms; the peak over the start, divided by the larger decoded size (image or
   label), is the measured factor, printed beside the factor the server counts
   (:func:`~tskd.service.casefiles.check_peak_bytes`). The counted factor must be the larger.
2. A real ``tskd serve --max-image-mb LIMIT`` accepts two of the largest uploads it allows at once;
   the server's RSS is sampled every 2 ms and its growth must stay under LIMIT.

Prints a table and writes ``benchmarks/results/upload_memory.json``::

    python TSKDBackend/benchmarks/bench_upload_memory.py [--slices 160] [--limit-mb 160]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SRC = REPO / "TSKDBackend" / "src"
sys.path.insert(0, str(REPO / "SlicerTSKD"))
sys.path.insert(0, str(SRC))
sys.path.insert(0, str(HERE))

import psutil  # noqa: E402
from benchlib import RESULTS_DIR, machine_info, now, write_results  # noqa: E402

CASES = [  # name, image suffix, image dtype, label dtype (None: no label)
    ("int16 image", ".nii.gz", "int16", None),
    ("int16 image + uint8 label", ".nii.gz", "int16", "uint8"),
    ("int16 image + int16 label", ".nii.gz", "int16", "int16"),
    ("int16 image + float32 label", ".nii.gz", "int16", "float32"),
    ("float32 .nrrd image (converted)", ".nrrd", "float32", None),
]

CHECK = textwrap.dedent("""
    import json, sys, threading, time
    from pathlib import Path
    import numpy as np, psutil
    from tskd.data.labels import Label, LabelTable
    from tskd.service.casefiles import check_case
    from tskd.service.uploads import ReceivedFile
    image, label = Path(sys.argv[1]), (Path(sys.argv[2]) if sys.argv[2] != "-" else None)
    process = psutil.Process()
    start = process.memory_info().rss
    peak = [start]
    done = threading.Event()
    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.002)
    thread = threading.Thread(target=sample)
    thread.start()
    table = LabelTable([Label(0, "background"), Label(1, "structure")])
    upload = ReceivedFile("image", "a" + "".join(image.suffixes), image, image.stat().st_size)
    label_upload = ReceivedFile("label", "a-label.nii.gz", label, label.stat().st_size) if label else None
    check_case(upload, label_upload, table=table, dimension=None, max_image_bytes=1 << 40)
    done.set()
    thread.join()
    print("BENCH", json.dumps({"peak_mib": (peak[0] - start) / 2**20}))
""")


def _volume(path: Path, slices: int, dtype: str, label: bool = False) -> Path:
    import numpy as np

    from tskd.data.image import Geometry, Image, write_image

    shape = (slices, 512, 512)
    if label:
        array = np.zeros(shape, dtype=dtype)
        array[slices // 4: slices // 2, 100:300, 100:300] = 1
    else:
        array = np.ascontiguousarray(np.broadcast_to((np.arange(512) % 700).astype(dtype)[None, None, :], shape))
    geometry = Geometry(size=(512, 512, slices), spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                        direction=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    return write_image(Image(array, geometry), path)


def measure_factors(folder: Path, slices: int) -> list[dict]:
    import numpy as np

    from tskd.service.casefiles import check_peak_bytes

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    rows = []
    for name, suffix, image_dtype, label_dtype in CASES:
        image = _volume(folder / f"image-{image_dtype}{suffix}", slices, image_dtype)
        label = _volume(folder / f"label-{label_dtype}.nii.gz", slices, label_dtype, label=True) if label_dtype else None
        out = subprocess.run([sys.executable, "-c", CHECK, str(image), str(label) if label else "-"],
                             capture_output=True, text=True, env=env, timeout=600, check=True)
        peak = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("BENCH "))[6:])["peak_mib"]
        voxels = slices * 512 * 512
        image_mib = voxels * np.dtype(image_dtype).itemsize / 2**20
        label_mib = voxels * np.dtype(label_dtype).itemsize / 2**20 if label_dtype else 0.0
        counted = max(check_peak_bytes(int(image_mib * 2**20), label=False, floating=image_dtype.startswith("float")),
                      check_peak_bytes(int(label_mib * 2**20), label=True, floating=bool(label_dtype)
                                       and label_dtype.startswith("float"))) / 2**20
        rows.append({"case": name, "image_mib": round(image_mib, 1), "label_mib": round(label_mib, 1),
                     "peak_mib": round(peak, 1), "measured_factor": round(peak / max(image_mib, label_mib), 2),
                     "counted_mib": round(counted, 1), "counted_covers_peak": counted >= peak})
    return rows


def measure_server(folder: Path, limit_mb: float) -> dict:
    from SlicerTSKDLib.backend.client import TSKDClient

    from tskd.service.casefiles import IMAGE_PEAK_FACTOR

    slices = int(limit_mb / IMAGE_PEAK_FACTOR * 2**20 / (512 * 512 * 2)) // 8 * 8  # int16: the largest allowed
    image = _volume(folder / "largest.nii.gz", slices, "int16")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "-m", "tskd", "serve", "--workspace", str(folder / "ws"), "--port", "0",
               "--weights-cache", str(folder / "weights"), "--max-image-mb", str(limit_mb), "--max-upload-mb", "400"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        line = server.stdout.readline() if server.stdout else ""
        url = line.split("listening on ", 1)[1].split(";")[0].split(" ")[0]
        client = TSKDClient(url, timeout=300)
        project = client.create_project("memory", [{"value": 1, "name": "structure"}])
        small = _volume(folder / "small.nii.gz", 8, "int16")
        client.upload_case(project["id"], "warm", str(small))  # imports and caches before the baseline
        process = psutil.Process(server.pid)
        start = process.memory_info().rss
        peak = [start]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], process.memory_info().rss)
                time.sleep(0.002)

        sampler = threading.Thread(target=sample)
        sampler.start()
        uploads = [threading.Thread(target=lambda n=n: TSKDClient(url, timeout=300).upload_case(
            project["id"], f"ct_{n}", str(image))) for n in range(2)]
        started = time.monotonic()
        for thread in uploads:
            thread.start()
        for thread in uploads:
            thread.join()
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        cases = sorted(c["name"] for c in client.list_cases(project["id"]))
    finally:
        server.terminate()
        server.wait(30)
    return {"limit_mib": limit_mb, "image": f"512 x 512 x {slices} int16", "image_mib": slices * 512 * 512 * 2 / 2**20,
            "uploads_at_once": 2, "accepted": cases, "seconds": round(seconds, 1),
            "rss_start_mib": round(start / 2**20, 1), "rss_growth_mib": round((peak[0] - start) / 2**20, 1),
            "under_limit": (peak[0] - start) / 2**20 <= limit_mb}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--slices", type=int, default=160, help="slices of the 512 x 512 test volumes (default 160)")
    parser.add_argument("--limit-mb", type=float, default=160.0, help="the server's --max-image-mb (default 160)")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR / "upload_memory.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="tskd-upload-memory-") as tmp:
        folder = Path(tmp)
        rows = measure_factors(folder, args.slices)
        server = measure_server(folder, args.limit_mb)
    results = {"benchmark": "upload_memory", "created": now(), "command": " ".join([Path(sys.executable).name, *sys.argv]),
               "machine": machine_info(), "checks": rows, "server": server}
    print(f"upload checks on {results['machine']['cpu']} ({results['machine']['logical_cores']} cores), "
          f"load {results['machine']['load_average_1_5_15min']}")
    print(f"{'case':<34}{'image MiB':>10}{'label MiB':>10}{'peak MiB':>10}{'factor':>8}{'counted MiB':>13}")
    for row in rows:
        print(f"{row['case']:<34}{row['image_mib']:>10}{row['label_mib']:>10}{row['peak_mib']:>10}"
              f"{row['measured_factor']:>8}{row['counted_mib']:>13}")
    print(f"server --max-image-mb {server['limit_mib']:g}: two {server['image']} uploads at once "
          f"({server['image_mib']:.0f} MiB decoded each): RSS {server['rss_start_mib']} MiB + "
          f"{server['rss_growth_mib']} MiB at the peak; accepted {server['accepted']}")
    write_results(results, args.out)
    print(f"wrote {args.out}")
    ok = all(row["counted_covers_peak"] for row in rows) and server["under_limit"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
