"""``tskd presets``: the named settings and what each is for."""

from __future__ import annotations

import argparse

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "presets",
        help="list the named settings (--preset) or show one",
        description="List the presets, or print one preset's settings as YAML.",
    )
    parser.add_argument("name", nargs="?", help="a preset to show in full (resolved with all defaults)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from importlib import resources

    import yaml

    from tskd.config import available_presets
    from tskd.runconfig import resolve_config

    if args.name:
        print(yaml.safe_dump(resolve_config(preset=args.name).to_dict(), sort_keys=False), end="")
        return 0
    for name in available_presets():
        text = (resources.files("tskd.config") / "presets" / f"{name}.yaml").read_text(encoding="utf-8")
        first = next((line[1:].strip() for line in text.splitlines() if line.startswith("#")), "")
        print(f"{name:12s} {first.split(':', 1)[-1].strip() if first.startswith(name) else first}")
    return 0
