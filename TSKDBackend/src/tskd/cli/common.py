"""Options shared by several commands."""

from __future__ import annotations

import argparse

__all__ = ["add_training_options"]


def add_training_options(parser: argparse.ArgumentParser, default_preset: str = "cpu-small") -> None:
    """The options every training command takes, so a smoke run is one line."""
    group = parser.add_argument_group("training options")
    group.add_argument(
        "--preset",
        default=default_preset,
        help=f"named settings (default: {default_preset}); see 'tskd presets' for the list",
    )
    group.add_argument("--config", metavar="FILE", help="YAML file with settings that override the preset")
    group.add_argument("--max-steps", type=int, metavar="N", help="stop each training stage after N steps")
    group.add_argument("--input-size", type=int, metavar="S", help="model input size in pixels (e.g. 256)")
    group.add_argument("--seed", type=int, help="random seed (default: from the preset)")
