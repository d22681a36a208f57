"""Running the service: refuse unsafe bindings, bind the socket, serve with uvicorn until stopped."""

from __future__ import annotations

import logging
import signal
import socket
import sys
import threading
from typing import BinaryIO, Callable

from tskd.errors import ConfigError
from tskd.service.settings import ServiceSettings, is_loopback

__all__ = ["check_binding", "bind_socket", "serve", "display_url"]

logger = logging.getLogger(__name__)


class _Stopped(Exception):
    """Raised by the SIGTERM handler to unwind the server like SIGINT does."""


def _raise_stopped(signum: int, frame: object) -> None:
    raise _Stopped()


def check_binding(settings: ServiceSettings) -> None:
    """Refuse to listen beyond this machine without a token.

    Raises:
        ConfigError: ``host`` is not a loopback address and no token is set.
    """
    if not is_loopback(settings.host) and not settings.token:
        raise ConfigError(
            f"refusing to listen on {settings.host} without a token: anyone who can reach this machine could read "
            "your images and start jobs. Pass --token (or set TSKD_TOKEN), or listen on 127.0.0.1 only"
        )


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0 picks a free one).

    Raises:
        ConfigError: the address cannot be used (in use, not an address of this machine...).
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"--host {host}: not a known host name or address ({exc})") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if sys.platform != "win32":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another --port") from None
    sock.set_inheritable(False)
    return sock


def display_url(settings: ServiceSettings, port: int) -> str:
    """The URL a client on this machine (or, for a wildcard address, elsewhere) should use."""
    host = settings.host
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{settings.scheme}://{host}:{port}"


def _stop_at_stdin_eof(server: object, stdin: BinaryIO) -> threading.Thread:
    """A thread that reads (and drops) ``stdin`` and asks ``server`` to stop at its end of file.

    The program that starts a local server with a pipe as its stdin holds the pipe's other end:
    when that program exits or dies (even by SIGKILL), the operating system closes it, and the
    read here returns end of file.
    """

    def watch() -> None:
        try:
            while stdin.read(1 << 16):
                pass
        except (OSError, ValueError):
            pass  # a closed or unreadable stdin counts as the parent gone
        logger.warning("standard input closed (the program that started this server is gone); stopping")
        server.should_exit = True  # type: ignore[attr-defined]

    thread = threading.Thread(target=watch, name="tskd-exit-with-parent", daemon=True)
    thread.start()
    return thread


def serve(settings: ServiceSettings, *, on_ready: Callable[[str], None] | None = None,
          exit_with_parent: bool = False) -> None:
    """Serve until SIGINT/SIGTERM; jobs keep running in their own processes afterwards.

    Args:
        settings: the service settings.
        on_ready: called with the base URL once the server accepts requests' scheduling.
        exit_with_parent: also stop when standard input reaches its end of file (the parent that
            holds the other end of a stdin pipe exited or died), as a SIGTERM would stop it.

    Raises:
        ConfigError: unsafe binding or unusable address.
        TSKDError: the workspace is in use by another server or unusable.
    """
    import uvicorn

    from tskd.service.app import create_app
    from tskd.service.core import Service

    check_binding(settings)
    sock = bind_socket(settings.host, settings.port)
    port = sock.getsockname()[1]
    try:
        service = Service(settings)
    except BaseException:
        sock.close()
        raise
    url = display_url(settings, port)
    app = create_app(service, on_ready=(lambda: on_ready(url)) if on_ready else None)
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_keep_alive=5,
        ssl_certfile=str(settings.ssl_certfile) if settings.ssl_certfile else None,
        ssl_keyfile=str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
    )
    if threading.current_thread() is threading.main_thread():
        # uvicorn re-raises the signal that stopped it; make SIGTERM unwind (and clean up) like SIGINT
        signal.signal(signal.SIGTERM, _raise_stopped)
    server = uvicorn.Server(config)
    if exit_with_parent:
        _stop_at_stdin_eof(server, sys.stdin.buffer)
    try:
        server.run(sockets=[sock])
    except (_Stopped, KeyboardInterrupt):
        pass
    finally:
        service.close()
        sock.close()
        logger.info("server stopped")
