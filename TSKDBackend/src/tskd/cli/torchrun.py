"""``python -m tskd.cli.torchrun ARGS`` is ``python -m torch.distributed.run ARGS`` (torchrun), except
that being stopped by a signal (Ctrl-C, SIGTERM), which the workers answer by saving a checkpoint,
ends with one line instead of torchrun's traceback. Used by ``--nproc`` (:mod:`tskd.cli.launch`).
"""

from __future__ import annotations

import signal
import sys

__all__ = ["main"]


def main() -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main()
    except SignalException as exc:
        name = signal.Signals(exc.sigval).name
        print(f"torchrun: {name}: the workers were asked to stop", file=sys.stderr)
        return 128 + int(exc.sigval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
