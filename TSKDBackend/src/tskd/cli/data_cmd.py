"""``tskd data ...``: look at datasets before training.

Each subcommand lives in its own ``_add_<name>`` / ``_run_<name>`` pair so that more can join the
group without touching the others.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tskd.atomic import write_json
from tskd.cli.phantom_cmd import add_phantom_command

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group."""
    parser = subparsers.add_parser(
        "data",
        help="check datasets, make phantom data",
        description="Work with datasets: see what tskd finds in a folder or manifest.",
    )
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    _add_check(sub)
    add_phantom_command(sub)
    parser.set_defaults(func=lambda args: _no_subcommand(parser))


def _no_subcommand(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 1


def _add_check(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "check",
        help="read every case of a dataset and report what can be used",
        description=(
            "Read every image and label of DATASET (a folder with images/ + labels/ or masks/, an MSD folder "
            "with imagesTr/ + labelsTr/, or a CSV/JSON manifest), summarise it and list problems. "
            "Exit status 0 when the dataset can be used for training, 1 when it cannot."
        ),
    )
    parser.add_argument("dataset", metavar="DATASET", help="dataset folder or manifest file")
    parser.add_argument(
        "--subject-pattern",
        metavar="REGEX",
        help="regular expression whose first group is the subject in a case name, e.g. '^(\\d{3})' "
        "so that 010_HC and 010_2HC count as one subject",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the full report as JSON to FILE")
    parser.add_argument("--headers-only", action="store_true", help="read headers only (fast, finds fewer problems)")
    parser.set_defaults(func=_run_check)


def _run_check(args: argparse.Namespace) -> int:
    from tskd.data.check import check_dataset, format_report

    report = check_dataset(args.dataset, subject_pattern=args.subject_pattern, read_pixels=not args.headers_only)
    print(format_report(report))
    if args.json:
        write_json(Path(args.json), report.to_dict())
    return 0 if report.usable else 1
