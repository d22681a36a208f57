"""``tskd data phantom``: write a synthetic phantom dataset (a thin parser over
:func:`tskd.data.phantom.write_phantom_dataset`)."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_phantom_command", "run_phantom_command"]

_EPILOG = """\
examples:
  tskd data phantom --out phantoms                     8 labelled 64x64x32 MR-like cases
  tskd data phantom --out ct --modality ct --cases 4 --unlabelled 2 --oblique
  tskd data phantom --out us2d --size 128 128          2D phantoms
"""


def add_phantom_command(data_subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``phantom`` subcommand to the ``tskd data`` group's subparsers; returns its parser."""
    parser = data_subparsers.add_parser(
        "phantom",
        help="write a synthetic phantom dataset (images/, labels/, labels.json)",
        description="Write seeded synthetic phantoms (organ-like structures with exact labels) in the "
        "standard dataset layout, to try the pipeline without real data.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="dataset folder to create")
    parser.add_argument("--cases", type=int, default=8, metavar="N", help="labelled cases (default: 8)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default: 0)")
    parser.add_argument(
        "--unlabelled", type=int, default=0, metavar="K", help="extra cases without labels (default: 0)"
    )
    parser.add_argument(
        "--size",
        type=int,
        nargs="+",
        metavar="N",
        help="voxels per axis, i j k order (e.g. 64 64 32; two values for 2D)",
    )
    parser.add_argument("--spacing", type=float, nargs="+", metavar="MM", help="voxel size in mm, i j k order")
    parser.add_argument("--structures", type=int, metavar="N", help="foreground classes, 1-4 (default: 3)")
    parser.add_argument("--modality", choices=["mr", "ct"], help="MR-like floats or CT-like Hounsfield units")
    parser.add_argument("--noise", type=float, help="noise level relative to the intensity scale")
    parser.add_argument("--oblique", action="store_true", help="use a rotated direction matrix and a shifted origin")
    parser.add_argument("--overwrite", action="store_true", help="replace DIR when it already exists")
    parser.set_defaults(func=run_phantom_command)
    return parser


def run_phantom_command(args: argparse.Namespace) -> int:
    """Handler of ``tskd data phantom``: builds the config from the flags and writes the dataset."""
    from tskd.data.phantom import (
        OBLIQUE_ORIGIN,
        OBLIQUE_ROTATION_DEG,
        PhantomConfig,
        write_phantom_dataset,
    )
    from tskd.errors import ConfigError

    overrides: dict = {}
    if args.size:
        overrides["size"] = list(args.size)
    if args.spacing:
        overrides["spacing"] = list(args.spacing)
    if args.structures is not None:
        overrides["structures"] = args.structures
    if args.modality:
        overrides["modality"] = args.modality
    if args.noise is not None:
        overrides["noise"] = args.noise
    if args.oblique:
        overrides["rotation_deg"] = list(OBLIQUE_ROTATION_DEG)
        overrides["origin"] = list(OBLIQUE_ORIGIN)
    dimension = len(args.size) if args.size else 3
    if args.spacing and len(args.spacing) != dimension:
        raise ConfigError(f"--spacing needs {dimension} values (one per axis of --size), got {len(args.spacing)}")
    if args.cases < 1 or args.unlabelled < 0:
        raise ConfigError("--cases must be at least 1 and --unlabelled must not be negative")
    config = PhantomConfig.from_dict(overrides, source="tskd data phantom")
    out = write_phantom_dataset(
        args.out,
        cases=args.cases,
        seed=args.seed,
        config=config,
        unlabelled=args.unlabelled,
        overwrite=args.overwrite,
    )
    size = "x".join(str(s) for s in config.size)
    print(
        f"wrote {args.cases} labelled and {args.unlabelled} unlabelled phantom cases "
        f"({size}, {config.modality}) to {out}"
    )
    return 0
