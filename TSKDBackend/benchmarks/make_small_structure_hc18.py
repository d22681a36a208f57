"""A 2D task with one small structure in RGB PNGs, made from HC18 (not a benchmark itself).

Each HC18 image and its head mask are shrunk to a third and pasted at a random place of a speckle
background of the original size; the image is saved as an RGB PNG with slightly different
channels, the mask as an RGB PNG (255 = head). The head then covers about 4% of the image instead
of about 40%, as a kidney or a nodule does in an ultrasound picture: at the 64-pixel inputs of
``hc18_cpu2c.yaml`` it is 10 to 20 pixels across. Used to check how the teacher and the students
cope with small structures (docs/benchmarks.md, "Teacher on a small structure").

Usage (from the repository root)::

    .venv/bin/python TSKDBackend/benchmarks/make_small_structure_hc18.py --hc18 ../shared/data/hc18 \\
        --out hc18_small_rgb [--count 300] [--seed 0]

The derived images keep HC18's licence (CC BY 4.0, van den Heuvel et al. 2018); never commit them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image


def make(hc18: Path, out: Path, *, count: int, seed: int) -> int:
    """Write ``count`` image/mask pairs (the first HC18 names in sorted order); returns how many."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = sorted(p.name for p in (hc18 / "images").glob("*.png"))[:count]
    for name in names:
        image = np.asarray(Image.open(hc18 / "images" / name).convert("L"))
        mask = np.asarray(Image.open(hc18 / "masks" / name).convert("L"))
        height, width = image.shape
        h, w = height // 3, width // 3
        small = np.asarray(Image.fromarray(image).resize((w, h), Image.BILINEAR))
        small_mask = np.asarray(Image.fromarray(mask).resize((w, h), Image.NEAREST))
        canvas = np.clip(rng.normal(30, 12, (height, width)), 0, 255).astype(np.uint8)
        label = np.zeros((height, width), np.uint8)
        y, x = int(rng.integers(0, height - h)), int(rng.integers(0, width - w))
        canvas[y:y + h, x:x + w] = small
        label[y:y + h, x:x + w] = small_mask
        rgb = np.stack([canvas, np.clip(canvas * 0.9, 0, 255), np.clip(canvas * 1.05, 0, 255)], axis=-1)
        Image.fromarray(rgb.astype(np.uint8)).save(out / "images" / name)
        Image.fromarray(np.stack([label] * 3, axis=-1)).save(out / "masks" / name)
    return len(names)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hc18", type=Path, default=Path("../shared/data/hc18"))
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(f"wrote {make(args.hc18, args.out, count=args.count, seed=args.seed)} image/mask pairs to {args.out}")


if __name__ == "__main__":
    main()
