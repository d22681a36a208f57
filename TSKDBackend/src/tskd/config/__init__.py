"""Typed configuration: the base class and the named presets (presets are data, not code)."""

from tskd.config.base import ConfigBase, deep_merge, load_yaml, save_yaml
from tskd.config.presets import available_presets, load_preset

__all__ = ["ConfigBase", "deep_merge", "load_yaml", "save_yaml", "available_presets", "load_preset"]
