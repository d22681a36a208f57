"""The list of command groups, in the order ``tskd --help`` shows them."""

from __future__ import annotations

REGISTRY: list = []
