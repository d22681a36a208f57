"""Draw the SlicerTSKD icon (128x128 PNG): a large stack of image slices (the teacher) passing its
knowledge, along an arrow, to one small slice with a segmentation (the student).

Usage: python Utilities/make_icon.py   (writes Resources/Icons/SlicerTSKD.png and the module's copy)
Needs Pillow. Drawn at 4x and downsampled, for smooth edges.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter

SIZE = 128
SCALE = 4
ROOT = Path(__file__).resolve().parents[1]
TARGETS = [ROOT / "Resources" / "Icons" / "SlicerTSKD.png", ROOT / "SlicerTSKD" / "Resources" / "Icons" / "SlicerTSKD.png"]


def s(value: float) -> int:
    return int(round(value * SCALE))


def gradient(size: int, top: tuple, bottom: tuple) -> Image.Image:
    image = Image.new("RGBA", (size, size))
    draw = ImageDraw.Draw(image)
    for y in range(size):
        t = y / (size - 1)
        draw.line([(0, y), (size, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)) + (255,))
    return image


def slab(draw: ImageDraw.ImageDraw, x: float, y: float, w: float, h: float, skew: float, fill: tuple, outline: tuple) -> None:
    """A slice seen in perspective: a parallelogram with its top edge shifted right by ``skew``."""
    points = [(s(x + skew), s(y)), (s(x + w + skew), s(y)), (s(x + w), s(y + h)), (s(x), s(y + h))]
    draw.polygon(points, fill=fill)
    draw.line(points + [points[0]], fill=outline, width=s(1.6), joint="curve")


def main() -> None:
    big = SIZE * SCALE
    background = gradient(big, (24, 46, 92), (12, 22, 48))
    mask = Image.new("L", (big, big), 0)
    ImageDraw.Draw(mask).rounded_rectangle([0, 0, big - 1, big - 1], radius=s(24), fill=255)
    icon = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    icon.paste(background, (0, 0), mask)

    layer = Image.new("RGBA", (big, big), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    # teacher: a tall stack of slices
    for i, shade in enumerate([(60, 120, 200), (80, 150, 225), (110, 185, 245), (150, 215, 255)]):
        slab(draw, 12, 78 - i * 14, 44, 22, 14, shade + (235,), (230, 245, 255, 255))
    # student: one small slice with a segmented structure
    slab(draw, 78, 78, 30, 16, 10, (150, 215, 255, 240), (230, 245, 255, 255))
    draw.ellipse([s(88), s(80.5), s(102), s(90.5)], fill=(255, 150, 60, 255), outline=(255, 225, 190, 255), width=s(1.2))
    # the distillation arrow: a quadratic curve from above the stack down to the small slice
    start, control, end = (62.0, 30.0), (104.0, 6.0), (96.0, 66.0)
    curve = []
    for k in range(41):
        t = k / 40
        x = (1 - t) ** 2 * start[0] + 2 * (1 - t) * t * control[0] + t ** 2 * end[0]
        y = (1 - t) ** 2 * start[1] + 2 * (1 - t) * t * control[1] + t ** 2 * end[1]
        curve.append((s(x), s(y)))
    orange = (255, 170, 70, 255)
    draw.line(curve[:-3], fill=orange, width=s(5), joint="curve")
    draw.ellipse([curve[0][0] - s(2.5), curve[0][1] - s(2.5), curve[0][0] + s(2.5), curve[0][1] + s(2.5)], fill=orange)
    tx, ty = end[0] - control[0], end[1] - control[1]
    norm = (tx * tx + ty * ty) ** 0.5
    ux, uy = tx / norm, ty / norm
    head = [(end[0] + ux * 4, end[1] + uy * 4), (end[0] - ux * 9 - uy * 7, end[1] - uy * 9 + ux * 7),
            (end[0] - ux * 9 + uy * 7, end[1] - uy * 9 - ux * 7)]
    draw.polygon([(s(x), s(y)) for x, y in head], fill=orange)

    shadow = layer.split()[-1].filter(ImageFilter.GaussianBlur(s(2)))
    shadowLayer = Image.new("RGBA", (big, big), (0, 0, 0, 110))
    shadowLayer.putalpha(shadow.point(lambda a: a * 110 // 255))
    icon.alpha_composite(shadowLayer, (s(1.5), s(2)))
    icon.alpha_composite(layer)
    icon = icon.resize((SIZE, SIZE), Image.LANCZOS)
    for target in TARGETS:
        target.parent.mkdir(parents=True, exist_ok=True)
    icon.save(TARGETS[0], optimize=True)
    shutil.copyfile(TARGETS[0], TARGETS[1])


if __name__ == "__main__":
    main()
