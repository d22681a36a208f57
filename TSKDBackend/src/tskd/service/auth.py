"""Bearer-token authentication for every request except the health check.

A pure ASGI middleware: it answers 401 with ``{"detail": "unauthorized", "code": "unauthorized"}`` and nothing else when
the ``Authorization: Bearer <token>`` header is missing or wrong (the token compared in constant
time; the scheme name in any letter case, as HTTP says), and
passes everything else on untouched (upload bodies stream through it). Before a 401 it reads and
drops up to :data:`DRAIN_BYTES` of the request body, so that a client still sending a small upload
gets the answer rather than a reset connection; larger bodies are cut off.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Awaitable, Callable

__all__ = ["BearerTokenMiddleware", "DRAIN_BYTES", "drain_body"]

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_BODY = json.dumps({"detail": "unauthorized", "code": "unauthorized"}).encode()  # tskd.service.errors.error_body
#: Body bytes an unauthenticated request may make the server read (and drop) before its 401.
DRAIN_BYTES = 8 << 20


async def drain_body(receive: Receive, limit: int = DRAIN_BYTES) -> None:
    """Read and drop up to about ``limit`` bytes of a request body that will not be used, so that a
    client still sending a small one gets the answer rather than a reset connection."""
    drained = 0
    while drained <= limit:
        message = await receive()
        if message["type"] != "http.request":
            break
        drained += len(message.get("body", b""))
        if not message.get("more_body", False):
            break


class BearerTokenMiddleware:
    """Require ``Authorization: Bearer <token>`` on HTTP requests outside ``open_paths``.

    Args:
        app: the wrapped ASGI app.
        token: the expected token.
        open_paths: exact paths served without a token (the health check).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, token: str, open_paths: tuple[str, ...] = ()) -> None:
        if not token:
            raise ValueError("token must not be empty")
        self.app = app
        self._expected = token.encode()
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in self.open_paths:
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                given = value
                break
        scheme, _, credentials = given.strip().partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(b" "), self._expected):
            await self.app(scope, receive, send)
            return
        await drain_body(receive)
        await send({
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode()),
                        (b"www-authenticate", b"Bearer")],
        })
        await send({"type": "http.response.body", "body": _BODY})
