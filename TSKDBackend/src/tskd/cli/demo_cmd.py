"""``tskd demo``: try the whole pipeline on generated phantom data, no data of your own needed."""

from __future__ import annotations

import argparse

from tskd.cli.common import add_training_options, config_from_args

__all__ = ["register"]

DESCRIPTION = """\
Generate a phantom dataset (3D volumes with organ-like structures and exact labels), run the
whole TS-KD pipeline on it, segment held-out phantoms with the exported student and score them.
Takes a few minutes on a laptop CPU with the default 'tiny' preset. Run it again in the same
work folder to resume or reuse what is done.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole pipeline on generated phantom data (minutes on a CPU)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", default="tskd-demo", metavar="DIR", help="work folder (default: ./tskd-demo)")
    parser.add_argument("--cases", type=int, default=8, help="labelled phantom volumes to train on (default: 8)")
    add_training_options(parser, default_preset="tiny")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tskd.pipeline.demo import format_demo, run_demo

    result = run_demo(args.workdir, config_from_args(args), cases=args.cases)
    print(format_demo(result))
    return 0
