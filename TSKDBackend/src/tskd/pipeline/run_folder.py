"""The run folder: every artifact of a pipeline run at a fixed place (see docs/architecture.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tskd.config.base import load_yaml, save_yaml
from tskd.errors import ConfigError

__all__ = ["RunFolder", "read_json", "reference_member_folder", "finished_reference_members"]


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def reference_member_folder(reference: Path, index: int) -> Path:
    """Where member ``index`` of a reference (``reference.members`` > 1) is trained: member 0 in the
    reference's own folder, member k in ``members/k`` inside it."""
    return reference if index == 0 else reference / "members" / str(index)


def finished_reference_members(reference: Path) -> list[Path]:
    """The ``stage.json`` of each finished member after the first, found in ``reference``."""
    return sorted(reference.glob("members/*/stage.json"))


@dataclass(frozen=True)
class RunFolder:
    """Paths of one run. Nothing here is created until a stage writes it."""

    root: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "root", Path(self.root))

    config = property(lambda self: self.root / "config.yaml")
    split = property(lambda self: self.root / "split.json")
    prepared = property(lambda self: self.root / "prepared")
    teacher = property(lambda self: self.root / "teacher")
    synthesis = property(lambda self: self.root / "synthesis")
    transfer_set = property(lambda self: self.root / "transfer_set")
    mae = property(lambda self: self.root / "student" / "mae")
    distill = property(lambda self: self.root / "student" / "distill")
    finetune = property(lambda self: self.root / "student" / "finetune")
    reference = property(lambda self: self.root / "student" / "reference")
    candidates = property(lambda self: self.root / "candidates")
    package = property(lambda self: self.root / "package")
    report = property(lambda self: self.root / "report")
    status = property(lambda self: self.root / "status.json")
    log = property(lambda self: self.root / "log.txt")
    summary = property(lambda self: self.root / "summary.json")

    def check_or_save_config(self, config: Any) -> None:
        """Save the resolved config; on a later run refuse different settings in the same folder.

        A setting missing from the saved file (a run made by an older tskd that did not have it) is
        accepted when the new value is the setting's default, and the file is completed, so an old
        run can be resumed after an upgrade; the stages still to run use the default, and each
        finished stage's own fingerprint still refuses weights made with other settings. A
        non-default value for a missing setting is a difference like any other.

        Args:
            config: a :class:`~tskd.config.ConfigBase` (e.g. the pipeline config).
        """
        resolved = config.to_dict()
        if self.config.is_file():
            saved = load_yaml(self.config)
            completed = _complete(saved, resolved, type(config)().to_dict())
            if completed == resolved and completed != saved:
                save_yaml(resolved, self.config)
                return
            if saved != resolved:
                keys = sorted(_differences(saved, resolved))
                raise ConfigError(
                    f"{self.root} holds a run made with different settings (differences in: "
                    f"{', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}). Run again with the same "
                    "settings to resume it, or choose a new --out folder."
                )
            return
        self.root.mkdir(parents=True, exist_ok=True)
        save_yaml(resolved, self.config)


def _complete(saved: Any, resolved: Any, defaults: Any) -> Any:
    """``saved`` with the keys it lacks taken from ``resolved`` where those equal ``defaults``."""
    if not (isinstance(saved, dict) and isinstance(resolved, dict)):
        return saved
    out = dict(saved)
    for key, value in resolved.items():
        default = defaults.get(key) if isinstance(defaults, dict) else None
        if key not in saved:
            if value == default:
                out[key] = value
        else:
            out[key] = _complete(saved[key], value, default)
    return out


def _differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in set(a) | set(b):
            out += _differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]
