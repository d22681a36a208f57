"""Settings of one ``tskd serve`` process."""

from __future__ import annotations

import ipaddress
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ServiceSettings", "default_train_command", "is_loopback"]

API_PREFIX = "/api/v1"


def default_train_command() -> list[str]:
    """``<this python> -m tskd train``: the pipeline's command line, run by every job."""
    return [sys.executable, "-m", "tskd", "train"]


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServiceSettings:
    """What a service instance needs to know.

    Args:
        workspace: folder holding the database, the projects' datasets, jobs and models.
        host / port: where to listen (port 0 picks a free port).
        token: when set, every request except ``/health`` needs ``Authorization: Bearer <token>``.
        max_upload_mb: largest accepted file in an upload, in MiB (bytes sent).
        max_image_mb: the most memory checking one uploaded image or label may take, in MiB: its
            decoded size (voxels x bytes per voxel, as its header declares, read before any pixel
            is decoded) times the measured peak factor of the check (about 2.3 for an image; see
            :func:`tskd.service.casefiles.check_peak_bytes`). Uploads are checked one at a time.
        body_timeout_s: seconds any request body may send nothing before it is abandoned (408),
            its partial file removed; also the grace period of ``body_min_rate_kb_s``.
        body_min_rate_kb_s: the slowest average rate of a request body, in KiB/s: a body may take
            ``body_timeout_s`` plus one second per ``body_min_rate_kb_s`` KiB received so far
            (Apache's mod_reqtimeout ``MinRate``); a body that trickles is cut with 408.
        body_deadline_s: the longest any request body may take however fast it arrives (408).
        max_queued_suggestions: suggestion computations waiting or running at once; a request
            that would start one more is answered 503 with ``Retry-After``.
        auto_resume: queue jobs found interrupted at start-up again.
        max_concurrent_jobs: training processes that may run at once (GPUs are shared round-robin).
        train_command: the command a job runs, before its ``--data ... --out ...`` arguments.
        cancel_grace_s: seconds a cancelled worker gets to save a checkpoint before it is killed.
        scheduler_interval_s: how often the scheduler looks at the queue and the workers.
        log_tail_lines: lines of the worker's output shown in a job's status.
        weights_cache: the foundation weights cache shared with ``tskd foundation`` (default
            ``$TSKD_HOME/checkpoints``); the workspace's ``checkpoints/`` folder is searched too.
        max_weights_upload_mb: largest accepted foundation weights file in an import, in MiB.
        foundation_mirror: base URL of a mirror holding the catalog's files (default
            ``$TSKD_FOUNDATION_MIRROR``, else the catalog's own URLs).
        check_job_settings: check a job's settings against the pipeline's config
            (:func:`tskd.runconfig.check_settings`) when the job is created, so that a wrong field
            is a 422 at once rather than a failed job minutes later. Off only for a
            ``train_command`` that is not ``tskd train`` (the tests' fake trainer).
    """

    workspace: Path
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_upload_mb: float = 512.0
    max_image_mb: float = 1536.0
    body_timeout_s: float = 60.0
    body_min_rate_kb_s: float = 1.0
    body_deadline_s: float = 1800.0
    max_queued_suggestions: int = 4
    auto_resume: bool = False
    max_concurrent_jobs: int = 1
    train_command: list[str] = field(default_factory=default_train_command)
    cancel_grace_s: float = 30.0
    scheduler_interval_s: float = 0.5
    log_tail_lines: int = 20
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    weights_cache: Path | None = None
    max_weights_upload_mb: float = 4096.0
    foundation_mirror: str | None = None
    check_job_settings: bool = True

    def __post_init__(self) -> None:
        from tskd.foundation.cache import default_cache_dir

        self.workspace = Path(self.workspace).expanduser().resolve()
        self.weights_cache = (Path(self.weights_cache).expanduser().resolve() if self.weights_cache is not None
                              else default_cache_dir())
        if isinstance(self.train_command, str):
            self.train_command = shlex.split(self.train_command)
        if not self.train_command:
            raise ValueError("train_command must not be empty")
        if not 0 <= int(self.port) <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.max_upload_mb <= 0:
            raise ValueError(f"max_upload_mb must be positive, got {self.max_upload_mb}")
        if self.max_image_mb <= 0:
            raise ValueError(f"max_image_mb must be positive, got {self.max_image_mb}")
        if self.body_timeout_s <= 0:
            raise ValueError(f"body_timeout_s must be positive, got {self.body_timeout_s}")
        if self.body_min_rate_kb_s <= 0:
            raise ValueError(f"body_min_rate_kb_s must be positive, got {self.body_min_rate_kb_s}")
        if self.body_deadline_s <= 0:
            raise ValueError(f"body_deadline_s must be positive, got {self.body_deadline_s}")
        if self.max_queued_suggestions < 1:
            raise ValueError(f"max_queued_suggestions must be at least 1, got {self.max_queued_suggestions}")
        if self.max_weights_upload_mb <= 0:
            raise ValueError(f"max_weights_upload_mb must be positive, got {self.max_weights_upload_mb}")
        if self.max_concurrent_jobs < 1:
            raise ValueError(f"max_concurrent_jobs must be at least 1, got {self.max_concurrent_jobs}")
        if self.cancel_grace_s < 0:
            raise ValueError(f"cancel_grace_s must not be negative, got {self.cancel_grace_s}")
        if self.token is not None and not self.token.strip():
            self.token = None
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ValueError("TLS needs both a certificate file and a key file")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_image_bytes(self) -> int:
        return int(self.max_image_mb * 1024 * 1024)

    @property
    def max_weights_upload_bytes(self) -> int:
        return int(self.max_weights_upload_mb * 1024 * 1024)

    @property
    def scheme(self) -> str:
        return "https" if self.ssl_certfile else "http"
