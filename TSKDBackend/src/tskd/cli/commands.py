"""The list of command groups, in the order ``tskd --help`` shows them."""

from __future__ import annotations

from tskd.cli import data_cmd, evaluate_cmd, predict_cmd

REGISTRY: list = [data_cmd.register, predict_cmd.register, evaluate_cmd.register]
