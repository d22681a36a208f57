"""Times as the API shows them: ISO 8601 in UTC, from the epoch seconds stored in the database."""

from __future__ import annotations

import datetime as _dt

__all__ = ["iso"]


def iso(seconds: float | None) -> str | None:
    """``2025-01-31T12:00:00.123Z`` for epoch ``seconds``; None stays None."""
    if seconds is None:
        return None
    stamp = _dt.datetime.fromtimestamp(float(seconds), tz=_dt.timezone.utc)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")
