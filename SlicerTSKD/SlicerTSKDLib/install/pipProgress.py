"""Estimating a ``pip install`` step's progress from the lines it prints.

pip (run with ``--progress-bar off``) prints ``Collecting NAME`` or ``Requirement already
satisfied: NAME`` once per package while resolving and downloading, then ``Installing collected
packages: ...`` and finally ``Successfully installed ...``. Resolving and downloading take most of
the time, so they fill the first 85 % of the step in proportion to the packages seen out of those
expected; installing fills the rest.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["PipProgress"]

_RESOLVE_SHARE = 0.85


class PipProgress:
    """Feed pip's output lines; read the step's completed fraction.

    Args:
        expectedPackages: about how many packages the step resolves (at least 1).

    Raises:
        ValueError: when ``expectedPackages`` is negative.
    """

    def __init__(self, expectedPackages: int) -> None:
        if expectedPackages < 0:
            raise ValueError("expectedPackages must be >= 0, got {}".format(expectedPackages))
        self.expectedPackages = max(1, int(expectedPackages))
        self.packagesSeen = 0
        self.fraction = 0.0

    def feed(self, line: str) -> Optional[float]:
        """Read one output line; returns the new fraction (0..1) when it moved, else None."""
        text = line.strip()
        if text.startswith(("Collecting ", "Requirement already satisfied: ")):
            self.packagesSeen += 1
            # never reach the installing share while resolving: the estimate of packages may be low
            value = _RESOLVE_SHARE * min(0.97, self.packagesSeen / self.expectedPackages)
        elif text.startswith("Installing collected packages:"):
            value = _RESOLVE_SHARE + 0.05
        elif text.startswith("Successfully installed"):
            value = 1.0
        else:
            return None
        if value <= self.fraction:
            return None
        self.fraction = value
        return value
