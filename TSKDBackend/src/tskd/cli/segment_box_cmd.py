"""``tskd segment-box``: the mask of the object in a box, with LiteMedSAM (a thin parser over
:func:`tskd.inference.box_segment.segment_box_file`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["register"]

_EPILOG = """\
examples:
  tskd segment-box --model litemedsam --image us.png --box 120,80,460,400 --output us_head.png
  tskd segment-box --model litemedsam --image mr.nii.gz --box 10,12,30,40 --slice 17 --propagate --output mr_seg.nii.gz

The box is x1,y1,x2,y2 in pixels: x along the image's (or slice's) columns, the last numpy axis;
y along its rows. For a 3D image, --slice K picks the slice along --axis A (numpy axis, default 0).

--model litemedsam is the zero-shot LiteMedSAM ('tskd foundation get litemedsam' downloads it; the
first use exports it to ONNX, about a minute). --model RUN accepts, for now, only a run (or folder)
whose package holds the teacher's exported box model (package/box_model/ with box_model.json);
runs trained so far do not have one, so use litemedsam.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``segment-box`` command."""
    parser = subparsers.add_parser(
        "segment-box",
        help="segment the object inside a box with LiteMedSAM",
        description="Segment the object inside a box drawn on a 2D image or on one slice of a volume, "
        "optionally propagating it through the neighbouring slices, and write a label file (1 inside, "
        "0 outside) aligned with the image. The input image is never overwritten.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, metavar="litemedsam|RUN",
                        help="litemedsam (zero-shot), a LiteMedSAM checkpoint file, or a run/box model folder "
                        "with exported teacher graphs")
    parser.add_argument("--image", required=True, type=Path, metavar="IMG", help="2D or 3D image file")
    parser.add_argument("--box", required=True, metavar="x1,y1,x2,y2", help="the box, in pixels")
    parser.add_argument("--slice", type=int, metavar="K", help="3D: the slice the box is on")
    parser.add_argument("--axis", type=int, default=0, metavar="A", help="3D: numpy axis of the slices (default 0)")
    parser.add_argument("--propagate", action="store_true", help="3D: continue into the neighbouring slices")
    parser.add_argument("--output", required=True, type=Path, metavar="MASK", help="label file to write")
    parser.add_argument("--backend", choices=("onnx", "torch"), default="onnx",
                        help="onnx (onnxruntime, default) or torch (foundation weights only)")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (default: physical cores)")
    parser.set_defaults(func=run_segment_box)


def run_segment_box(args: argparse.Namespace) -> int:
    """Handler of ``tskd segment-box``: one summary line."""
    from tskd.errors import ConfigError
    from tskd.inference.box_segment import parse_box, segment_box_file

    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    box = parse_box(args.box)
    result = segment_box_file(args.model, args.image, box, args.output, slice_index=args.slice, axis=args.axis,
                              propagate=args.propagate, backend=args.backend, threads=args.threads)
    where = ""
    if result.slices:
        span = f"slices {min(result.slices)}-{max(result.slices)}" if len(result.slices) > 1 else f"slice {result.slices[0]}"
        stops = f" (stopped: {', '.join(f'{d} {r}' for d, r in result.stopped.items())})" if result.stopped else ""
        where = f" on {span}{stops}"
    print(f"{args.image.name} -> {result.output} ({result.pixels} pixels{where}, {result.seconds:.1f} s)")
    return 0
