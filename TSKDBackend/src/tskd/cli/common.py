"""Options shared by several commands, and turning them into a pipeline config."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from tskd.runconfig import DEFAULT_PRESET  # light: the run config imports no model code

if TYPE_CHECKING:
    from tskd.runconfig import PipelineConfig

__all__ = ["add_training_options", "config_from_args"]


def add_training_options(parser: argparse.ArgumentParser, default_preset: str = DEFAULT_PRESET, *,
                         nproc: bool = False) -> None:
    """The options every training command takes, so a smoke run is one line.

    Args:
        parser: the command's parser.
        default_preset: preset used without ``--preset``.
        nproc: also offer ``--nproc N`` (the command can run under torchrun; see :mod:`tskd.cli.launch`).
    """
    group = parser.add_argument_group("training options")
    group.add_argument(
        "--preset",
        default=default_preset,
        help=f"named settings (default: {default_preset}); 'tskd presets' lists them",
    )
    group.add_argument("--config", metavar="FILE", help="YAML file with settings that override the preset")
    group.add_argument("--max-steps", type=int, metavar="N", help="stop each training stage after at most N steps")
    group.add_argument("--input-size", type=int, metavar="S", help="model input size in pixels, a multiple of 16 (e.g. 256)")
    group.add_argument("--seed", type=int, help="random seed (default: from the preset)")
    if not nproc:
        return
    group.add_argument(
        "--nproc", type=int, metavar="N",
        help="train with N processes on this machine (torchrun; on GPUs: the number of GPUs). "
             "Several machines: see docs/distributed.md",
    )


def config_from_args(args: argparse.Namespace, overrides: "dict | None" = None) -> "PipelineConfig":
    """The pipeline config of the parsed options; ``overrides`` (a nested mapping) apply after the
    preset and ``--config`` (a command's own flags, e.g. ``--update-from``)."""
    from tskd.runconfig import resolve_config

    return resolve_config(
        preset=args.preset,
        config_file=args.config,
        overrides=overrides,
        max_steps=args.max_steps,
        input_size=args.input_size,
        seed=args.seed,
        base=getattr(args, "base", None),
    )
