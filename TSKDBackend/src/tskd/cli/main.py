"""Entry point of the ``tskd`` console script.

Each command group lives in its own module with a ``register(subparsers)`` function; heavy
imports happen inside the command handlers so that ``tskd --help`` stays fast.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from tskd import __version__
from tskd.errors import TSKDError
from tskd.log import configure_logging

__all__ = ["build_parser", "main", "tolerate_narrow_output"]

logger = logging.getLogger("tskd.cli")

DESCRIPTION = """\
SlicerTSKD backend: train a small, fast segmentation model from a few labelled cases
(task-specific knowledge distillation of a foundation model).

Start with:  tskd demo            (the whole pipeline on generated phantom data)
Your data:   tskd data check DIR  (see what tskd finds in a dataset folder)
"""


def _command_modules() -> list[Callable[[argparse._SubParsersAction], None]]:
    from tskd.cli import commands

    return commands.REGISTRY


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tskd", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"tskd {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-v: debug, -vv: libraries too)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for register in _command_modules():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from tskd.cli.launch import record_exit_code

    tolerate_narrow_output()
    code = _main(list(sys.argv[1:] if argv is None else argv))
    record_exit_code(code)  # for 'tskd ... --nproc N', which forwards the workers' exit codes
    return code


def tolerate_narrow_output(stream: object = None) -> None:
    """Under an ASCII locale (LC_ALL=C with PYTHONUTF8=0, as some servers and CI run) a table with '±' would
    end a finished run in a UnicodeEncodeError; print '?' for what the terminal cannot show instead."""
    stream = sys.stdout if stream is None else stream
    encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
    if encoding not in ("utf8", "utf16", "utf32") and hasattr(stream, "reconfigure"):
        stream.reconfigure(errors="replace")


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        if (getattr(args, "nproc", None) or 1) > 1:
            from tskd.cli.launch import relaunch

            return relaunch(argv, args.nproc)
        result = args.func(args)
        return int(result or 0)
    except TSKDError as exc:
        _print_error(exc)
        logger.debug("details", exc_info=True)
        return exc.exit_code
    except KeyboardInterrupt:
        print("tskd: interrupted; run the same command again to resume where it stopped.", file=sys.stderr)
        return 130


def _print_error(exc: TSKDError) -> None:
    """One line on stderr; under torchrun the other ranks leave rank 0's failures and stops to rank 0."""
    import os

    try:
        rank = int(os.environ.get("RANK", "0") or 0)
    except ValueError:
        rank = 0
    if rank:
        from tskd.engine.distributed import MainProcessError
        from tskd.errors import CancelledError

        if isinstance(exc, (MainProcessError, CancelledError)):
            return
    print(f"{f'[rank {rank}] ' if rank else ''}tskd: error: {exc}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
