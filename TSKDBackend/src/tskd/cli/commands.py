"""The list of command groups, in the order ``tskd --help`` shows them."""

from __future__ import annotations

from tskd.cli import data_cmd, serve_cmd

REGISTRY: list = [data_cmd.register, serve_cmd.register]
