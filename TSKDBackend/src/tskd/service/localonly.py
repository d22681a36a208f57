"""Keep web pages of other sites away from a server that listens on this machine only.

A loopback server without a token trusts whoever can connect, and a browser can connect: any page
the user opens may send requests to ``http://127.0.0.1:PORT`` (a form upload needs no CORS
permission, it is merely unreadable), and a DNS-rebinding page (``evil.example`` resolving to
127.0.0.1) can even read the answers. Browsers always say where a request comes from, so two
checks shut both out, for loopback servers (with or without a token):

- the ``Host`` header must be a loopback name (``localhost``, ``127.0.0.1``, ``[::1]``, any port),
  else 421: a rebinding page's requests carry its own host name;
- an ``Origin`` header, when there is one, must be this server's own origin (scheme, host and port
  of the request), else 403: a page of another site (or another local port) gets nothing done.

Programs (the Slicer module's client, curl, scripts) send the host of the URL they were given and
no ``Origin``, and the server's own ``/docs`` page is same-origin, so they are unaffected. A test
client that sends ``Host: testserver`` (Starlette's ``TestClient`` default) must be given
``base_url="http://127.0.0.1"``. No CORS headers are ever sent.
"""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

import anyio

from tskd.service.auth import drain_body
from tskd.service.errors import error_body
from tskd.service.settings import is_loopback

__all__ = ["LocalOnlyMiddleware", "host_name"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_DRAIN_BYTES = 8 << 20  # body bytes read (and dropped) before a refusal, so a small upload gets the answer
_DRAIN_S = 10.0  # ... for at most this long
_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def _split_host(value: str) -> tuple[str, int | None] | None:
    """``host[:port]`` (``[v6]:port`` for IPv6) -> (lower-case host without brackets, port); None if malformed."""
    value = value.strip()
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_text = rest[1:] if rest else ""
    else:
        host, _, port_text = value.partition(":")
        if ":" in port_text:
            return None
    if port_text and not port_text.isdigit():
        return None
    host = host.lower().rstrip(".")
    return (host, int(port_text) if port_text else None) if host else None


def host_name(value: str) -> str | None:
    """The host name of a ``Host`` header value (None when malformed)."""
    parts = _split_host(value)
    return parts[0] if parts else None


class LocalOnlyMiddleware:
    """Refuse requests not addressed to a loopback name (421) and requests from other origins (403).

    Args:
        app: the wrapped ASGI app.
        bind_host: the address the server listens on (for the messages).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, bind_host: str) -> None:
        self.app = app
        self.bind_host = bind_host

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host_header, origin = None, None
        for name, value in scope.get("headers", ()):
            if name == b"host" and host_header is None:
                host_header = value.decode("latin-1")
            elif name == b"origin" and origin is None:
                origin = value.decode("latin-1")
        problem = self._problem(scope, host_header, origin)
        if problem is None:
            await self.app(scope, receive, send)
            return
        status, message = problem
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await _drain(receive)
        body = json.dumps(error_body(status, message)).encode()
        await send({
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await send({"type": "http.response.body", "body": body})

    def _problem(self, scope: Scope, host_header: str | None, origin: str | None) -> tuple[int, str] | None:
        scheme = str(scope.get("scheme") or "http")
        server = scope.get("server") or ("127.0.0.1", None)
        if host_header is None:  # HTTP/1.0 without Host: not a browser; compare an Origin with the socket
            address = (str(server[0]).lower(), server[1])
        else:
            parts = _split_host(host_header)
            if parts is None or not is_loopback(parts[0]):
                return 421, (
                    f"this server listens on {self.bind_host} (this machine only) and answers only requests "
                    f"addressed to localhost, 127.0.0.1 or [::1]; this one was addressed to {host_header!r} "
                    "(its Host header). Use the address the server printed (http://127.0.0.1:PORT); to serve "
                    "other machines, start tskd serve with --host and --token"
                )
            address = parts
        if origin is None:
            return None
        if not _same_origin(origin, scheme, address):
            shown = origin if len(origin) <= 200 else origin[:200] + "..."
            return 403, (
                f"requests from web pages of other sites are refused (Origin {shown!r}); this server answers "
                "programs such as the Slicer module, and web pages of its own address only"
            )
        return None


def _same_origin(origin: str, scheme: str, address: tuple[str, int | None]) -> bool:
    """True when ``origin`` is ``scheme://host:port`` of the request (default ports filled in)."""
    try:
        parsed = urlsplit(origin.strip())
        port = parsed.port
    except ValueError:
        return False
    if parsed.scheme.lower() != scheme or not parsed.hostname or parsed.path not in ("", "/"):
        return False
    default = _DEFAULT_PORTS.get(scheme)
    origin_port = port if port is not None else default
    host, request_port = address
    request_port = request_port if request_port is not None else default
    return parsed.hostname.lower().rstrip(".") == host and origin_port == request_port


async def _drain(receive: Receive) -> None:
    with anyio.move_on_after(_DRAIN_S):
        await drain_body(receive, _DRAIN_BYTES)
