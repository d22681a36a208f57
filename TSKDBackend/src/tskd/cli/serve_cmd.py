"""``tskd serve``: the backend service the Slicer module talks to (a thin parser over
:func:`tskd.service.server.serve`)."""

from __future__ import annotations

import argparse
import os
import shlex
from pathlib import Path

__all__ = ["register"]

_EPILOG = """\
examples:
  tskd serve --workspace ~/tskd-work                       this machine only, http://127.0.0.1:8000
  TSKD_TOKEN=s3cret tskd serve --workspace /data/tskd --host 0.0.0.0 --port 8443 \\
      --ssl-certfile cert.pem --ssl-keyfile key.pem         reachable from other machines, with a token

Put SAM / MedSAM weights (.pth, .safetensors or a Hugging Face folder) in WORKSPACE/checkpoints to
offer them as base models. Jobs run as separate processes and keep running when the server stops;
a restarted server picks them up. The API is described at http://HOST:PORT/docs.
"""


def _default(name: str) -> object:
    """The default of a :class:`~tskd.service.settings.ServiceSettings` field (its single source)."""
    from tskd.service.settings import ServiceSettings

    return ServiceSettings.__dataclass_fields__[name].default


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``serve`` command."""
    parser = subparsers.add_parser(
        "serve",
        help="run the backend service (projects, training jobs, models) for Slicer",
        description="Serve the HTTP API the Slicer module uses: projects and their labelled cases, "
        "training jobs run in worker processes, trained students to download.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workspace", required=True, type=Path, metavar="DIR",
                        help="folder for the database, datasets, jobs and models (created when missing)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default: 127.0.0.1, this machine only; others need --token)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000; 0 picks a free one)")
    parser.add_argument("--token", default=os.environ.get("TSKD_TOKEN"),
                        help="require 'Authorization: Bearer TOKEN' on every request but /health "
                        "(default: $TSKD_TOKEN)")
    parser.add_argument("--max-upload-mb", type=float, default=512.0, metavar="N",
                        help="largest accepted image or label file in MB, as sent (default: 512)")
    parser.add_argument("--max-image-mb", type=float, default=_default("max_image_mb"), metavar="N",
                        help="most memory checking one uploaded image or label may take, in MB: about 2.3 times "
                        "what it decodes to, read from its header before decoding; default: %(default)g, e.g. "
                        "a 512x512x1280 16-bit CT); uploads are checked one at a time")
    parser.add_argument("--body-timeout-s", type=float, default=_default("body_timeout_s"), metavar="S",
                        help="seconds a request body may stall (send nothing) before the server gives up on it "
                        "(default: %(default)g)")
    parser.add_argument("--body-min-rate-kb-s", type=float, default=_default("body_min_rate_kb_s"), metavar="R",
                        help="slowest average rate of a request body in KB/s: it may take --body-timeout-s plus one "
                        "second per R KB received (default: %(default)g)")
    parser.add_argument("--body-deadline-s", type=float, default=_default("body_deadline_s"), metavar="S",
                        help="longest a request body may take in all, however fast (default: %(default)g)")
    parser.add_argument("--max-queued-suggestions", type=int, default=_default("max_queued_suggestions"),
                        metavar="N", help="suggestion computations waiting or running at once; more are answered "
                        "503 'busy' (default: %(default)s)")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when standard input reaches its end, i.e. when the program that started the "
                        "server (and holds the other end of its stdin pipe) exits or dies")
    parser.add_argument("--auto-resume", action="store_true",
                        help="at start-up, resume the jobs that were interrupted (e.g. by a reboot)")
    parser.add_argument("--max-concurrent-jobs", type=int, default=1, metavar="N",
                        help="training jobs run at once (default: 1; with several GPUs, job k uses GPU k)")
    parser.add_argument("--cancel-grace-s", type=float, default=30.0, metavar="S",
                        help="seconds a cancelled job gets to save a checkpoint before it is killed (default: 30)")
    parser.add_argument("--train-command", metavar="CMD",
                        help="command jobs run instead of '<this python> -m tskd train' (e.g. another "
                        "environment's 'python -m tskd train'); the job's --data/--out/... are appended")
    parser.add_argument("--no-settings-check", dest="check_job_settings", action="store_false",
                        help="do not check a job's settings against tskd's pipeline config when it is created "
                        "(only for a --train-command that is not 'tskd train')")
    parser.add_argument("--weights-cache", type=Path, metavar="DIR",
                        help="foundation weights cache shared with 'tskd foundation' (default: $TSKD_HOME/checkpoints)")
    parser.add_argument("--max-weights-upload-mb", type=float, default=4096.0, metavar="N",
                        help="largest accepted foundation weights file in an import, in MB (default: 4096)")
    parser.add_argument("--foundation-mirror", metavar="URL", default=None,
                        help="server holding the catalog's weight files under their own names, for downloads "
                        "(default: $TSKD_FOUNDATION_MIRROR, else the catalog's URLs)")
    parser.add_argument("--ssl-certfile", type=Path, metavar="FILE", help="serve HTTPS with this certificate")
    parser.add_argument("--ssl-keyfile", type=Path, metavar="FILE", help="the certificate's private key")
    parser.set_defaults(func=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Handler of ``tskd serve``."""
    from tskd.errors import ConfigError
    from tskd.service.server import serve
    from tskd.service.settings import ServiceSettings, default_train_command

    try:
        settings = ServiceSettings(
            workspace=args.workspace,
            host=args.host,
            port=args.port,
            token=args.token,
            max_upload_mb=args.max_upload_mb,
            max_image_mb=args.max_image_mb,
            body_timeout_s=args.body_timeout_s,
            body_min_rate_kb_s=args.body_min_rate_kb_s,
            body_deadline_s=args.body_deadline_s,
            max_queued_suggestions=args.max_queued_suggestions,
            auto_resume=args.auto_resume,
            max_concurrent_jobs=args.max_concurrent_jobs,
            cancel_grace_s=args.cancel_grace_s,
            train_command=shlex.split(args.train_command) if args.train_command else default_train_command(),
            ssl_certfile=args.ssl_certfile,
            ssl_keyfile=args.ssl_keyfile,
            weights_cache=args.weights_cache,
            max_weights_upload_mb=args.max_weights_upload_mb,
            foundation_mirror=args.foundation_mirror,
            check_job_settings=args.check_job_settings,
        )
    except ValueError as exc:
        raise ConfigError(f"tskd serve: {exc}") from None

    def ready(url: str) -> None:
        auth = " (token required)" if settings.token else ""
        print(f"tskd serve: listening on {url}{auth}; API docs at {url}/docs; workspace {settings.workspace}",
              flush=True)

    serve(settings, on_ready=ready, exit_with_parent=args.exit_with_parent)
    try:
        print("tskd serve: stopped (running jobs go on; a restarted server picks them up)", flush=True)
    except OSError:  # --exit-with-parent: the parent that read our output is gone
        pass
    return 0
