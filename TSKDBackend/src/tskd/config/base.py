"""Typed configuration objects.

Every stage of the pipeline has one dataclass that derives from :class:`ConfigBase`; its field
defaults are the single source of truth for default values. Configs are built from nested dicts
(YAML files, presets, command-line overrides) with strict checking: an unknown or mistyped field
is a :class:`~tskd.errors.ConfigError` that names the field and where it came from.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union

import yaml

from tskd.atomic import write_text
from tskd.errors import ConfigError

__all__ = ["ConfigBase", "deep_merge", "load_yaml", "save_yaml"]

C = TypeVar("C", bound="ConfigBase")


@dataclasses.dataclass
class ConfigBase:
    """Mixin for dataclass configs: strict ``from_dict``, ``to_dict`` and YAML round trips."""

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None, *, source: str = "config") -> C:
        """Build the config from a (possibly partial) nested mapping.

        Args:
            data: field values; missing fields keep their defaults.
            source: where the values came from (a file name, ``--preset gpu``), used in errors.
        """
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        unknown = sorted(set(data) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown field(s) {', '.join(repr(u) for u in unknown)} in "
                f"'{cls.__name__}'; known fields: {', '.join(sorted(fields))}"
            )
        values = {}
        for name, value in data.items():
            default = _default_of(fields[name])
            if isinstance(default, ConfigBase) and isinstance(value, Mapping):
                # a partial nested section keeps this field's own defaults (e.g. a stage's ``train``
                # settings), not the nested class's generic ones
                value = deep_merge(default.to_dict(), value)
            values[name] = _coerce(value, hints[name], f"{source}: field '{name}'")
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON-safe: tuples become lists)."""
        return _plain(dataclasses.asdict(self))

    def replace(self: C, **changes: Any) -> C:
        """A copy with some top-level fields changed (values are checked like ``from_dict``)."""
        merged = deep_merge(self.to_dict(), changes)
        return type(self).from_dict(merged, source="override")

    @classmethod
    def from_yaml(cls: type[C], path: str | Path) -> C:
        return cls.from_dict(load_yaml(path), source=str(path))

    def to_yaml(self, path: str | Path) -> None:
        save_yaml(self.to_dict(), path)


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (dicts merge, everything else replaces)."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of fields at the top level, got {type(data).__name__}")
    return data


def save_yaml(data: Mapping[str, Any], path: str | Path) -> None:
    """Write YAML atomically (temporary file, then rename)."""
    write_text(path, yaml.safe_dump(_plain(dict(data)), sort_keys=False))


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` and convert the safe cases (int -> float, list -> tuple)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {hint}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(repr(a) for a in args)}")
        return value
    if isinstance(hint, type) and issubclass(hint, ConfigBase):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of fields, got {value!r}")
        return hint.from_dict(value, source=where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        item = args[0] if args else Any
        items = [_coerce(v, item, where) for v in value]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads "1e-4" as a string
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{where}: expected text, got {value!r}")
    return value
