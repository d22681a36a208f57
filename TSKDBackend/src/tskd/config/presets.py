"""Named presets: YAML files in ``tskd/config/presets/`` that override a few defaults per stage.

A preset is a nested mapping with one section per stage (``data``, ``teacher``, ``synthesis``,
``distill``, ``finetune``, ...). Stage configs read their own section; the defaults themselves live
in the stage's config dataclass, never here.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from tskd.config.base import load_yaml
from tskd.errors import ConfigError

__all__ = ["available_presets", "load_preset"]


def available_presets() -> list[str]:
    folder = resources.files("tskd.config") / "presets"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_preset(name: str) -> dict[str, Any]:
    """The preset's nested mapping; unknown names list the ones that exist."""
    names = available_presets()
    if name not in names:
        raise ConfigError(f"unknown preset '{name}'; available presets: {', '.join(names)}")
    with resources.as_file(resources.files("tskd.config") / "presets" / f"{name}.yaml") as path:
        return load_yaml(path)
