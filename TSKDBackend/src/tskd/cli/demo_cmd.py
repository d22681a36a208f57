"""``tskd demo``: try the whole pipeline on generated phantom data, no data of your own needed."""

from __future__ import annotations

import argparse

from tskd.cli.common import add_training_options, config_from_args
from tskd.cli.teacher_cmd import BASE_HELP

__all__ = ["register"]

DESCRIPTION = """\
Generate a phantom dataset (3D volumes with organ-like structures and exact labels), run the
whole TS-KD pipeline on it, segment held-out phantoms with the exported student and score them.
Takes a few minutes on a laptop CPU with the default 'tiny' preset. Run it again in the same
work folder to resume or reuse what is done.

With --base (e.g. litemedsam, after 'tskd foundation get litemedsam') the teacher is that
foundation model, fine-tuned on the phantoms; its encoder sees every training slice once (1-3 s
each on two CPU cores; cached for the next run), so use fewer slices (make demo: --slices 12).
The last lines say which student was exported (distilled or trained on the labels alone) and
its Dice on held-out phantoms.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="the whole pipeline on generated phantom data (minutes on a CPU)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", default="tskd-demo", metavar="DIR", help="work folder (default: ./tskd-demo)")
    parser.add_argument("--cases", type=int, default=8, help="labelled phantom volumes to train on (default: 8)")
    parser.add_argument("--slices", type=_slices, metavar="K",
                        help="slices per phantom volume (default: 32; at least 8)")
    parser.add_argument("--base", metavar="CHECKPOINT",
                        help=BASE_HELP.replace("foundation checkpoint", "the teacher's foundation checkpoint "
                                               "(default: none, a small teacher from scratch)", 1))
    add_training_options(parser, default_preset="tiny")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from tskd.pipeline.demo import format_demo, run_demo

    config = config_from_args(args)
    if config.teacher.uses_foundation_weights:
        from tskd.config import load_yaml
        from tskd.pipeline.demo import foundation_settings

        # the demo's foundation-teacher settings over the preset, the user's own --config over them
        args.base = config.teacher.base  # resolved once ('auto' says which weights it took)
        config = config_from_args(args, foundation_settings(load_yaml(args.config) if args.config else None))
    result = run_demo(args.workdir, config, cases=args.cases, slices=args.slices)
    print(format_demo(result))
    return 0


def _slices(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--slices needs a whole number, got {text!r}") from None
    if value < 8:
        raise argparse.ArgumentTypeError(f"--slices must be at least 8 (a phantom needs room for its structures), got {value}")
    return value
