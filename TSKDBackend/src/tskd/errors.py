"""Errors a user can cause and fix.

Every exception here carries a message that names the file or field at fault and says what to do.
The command line turns them into one line on stderr and a non-zero exit code; the service turns
them into a 4xx response. Anything else that escapes is a bug.
"""

from __future__ import annotations

__all__ = ["TSKDError", "DataError", "ConfigError", "CheckpointError", "DownloadError", "CancelledError"]


class TSKDError(Exception):
    """Base class of all user-facing errors."""

    exit_code = 2


class DataError(TSKDError):
    """An image, label or dataset cannot be used as it is."""


class ConfigError(TSKDError):
    """A configuration file, preset or option is invalid."""


class CheckpointError(TSKDError):
    """A model checkpoint is missing, corrupt, or does not match what was expected."""


class DownloadError(TSKDError):
    """A download failed (not found, timed out, disk full, a proxy's page instead of the file...)."""


class CancelledError(TSKDError):
    """A run was cancelled by the user; its last checkpoint is kept for resuming."""

    exit_code = 130
