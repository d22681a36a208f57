"""Time limits on every request body: a silence limit, a minimum rate and a total deadline.

A client that sends its body one byte every 59 seconds is never silent for a minute, yet it would
hold a connection and a server task forever. So every body, whatever the route (uploads, JSON
bodies, and the bodies that the token and origin checks read and drop before refusing), is
watched by this outermost ASGI middleware, which answers ``408`` and closes the connection when:

- nothing arrives for ``body_timeout_s`` (the body stalled);
- the body falls below the minimum rate: at any moment it may have taken ``body_timeout_s``
  plus one second per ``body_min_rate_kb_s`` KiB received so far (the rule of Apache's
  ``mod_reqtimeout``: ``body=T,MinRate=R``); a slow but steady link keeps going;
- it has taken ``body_deadline_s`` in all.

The route then sees the client as gone (``http.disconnect``): an upload's partial files are removed
by the route as for any broken upload, and the 408 replaces the route's own answer (so it goes out
once the route has cleaned up). Before it closes the connection the server reads and drops what
the client still sends, for up to ``LINGER_S`` (until the client has been silent for
``LINGER_QUIET_S``): a client that sends its whole body before it reads (``requests`` does) would
otherwise lose the 408, since a connection closed with unread bytes, or receiving bytes after its
close, is reset by the kernel, and a reset drops the answer the client had not read yet (Apache's
"lingering close" does the same for the same reason). Requests without
a body, and a body already complete, are not affected (a streamed answer may wait for the client
as long as it likes).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Awaitable, Callable

import anyio

from tskd.service.errors import error_body

__all__ = ["BodyDeadlineMiddleware"]

logger = logging.getLogger(__name__)

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LINGER_S = 2.0
"""Longest the connection stays open after a 408, reading and dropping what the client still sends."""
LINGER_QUIET_S = 0.5
"""The lingering ends sooner once the client has sent nothing for this long."""


class BodyDeadlineMiddleware:
    """Cut request bodies that stall, trickle or take too long, with ``408``.

    Args:
        app: the wrapped ASGI app.
        idle_s: longest silence, and the grace period of the minimum rate (``--body-timeout-s``).
        min_rate_bytes_s: slowest average rate after the grace period (``--body-min-rate-kb-s``).
        deadline_s: longest a body may take in all (``--body-deadline-s``).
    """

    def __init__(self, app: Callable[..., Awaitable[None]], *, idle_s: float, min_rate_bytes_s: float,
                 deadline_s: float) -> None:
        if idle_s <= 0 or min_rate_bytes_s <= 0 or deadline_s <= 0:
            raise ValueError("idle_s, min_rate_bytes_s and deadline_s must be positive")
        self.app = app
        self.idle_s = float(idle_s)
        self.min_rate = float(min_rate_bytes_s)
        self.deadline_s = float(deadline_s)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guarded = _GuardedBody(self, scope, receive, send)
        try:
            await self.app(scope, *guarded.channels())
        finally:
            await guarded.answer_if_cut()


def _has_body(scope: Scope) -> bool:
    headers = dict(scope.get("headers", ()))
    if b"transfer-encoding" in headers:
        return True
    length = headers.get(b"content-length")
    try:
        return length is not None and int(length) > 0
    except ValueError:
        return True  # not a number: the server refuses it, or the limits watch whatever arrives


class _GuardedBody:
    """One request's ``receive`` with the limits, and a ``send`` that drops answers after a 408."""

    def __init__(self, limits: BodyDeadlineMiddleware, scope: Scope, receive: Receive, send: Send) -> None:
        self.limits = limits
        self.receive_upstream = receive
        self.send_upstream = send
        self.started = time.monotonic()
        self.received = 0
        # a request without a body (no Transfer-Encoding, no Content-Length above 0: a GET) has nothing to
        # time out; its route may work longer than the silence limit before it listens to the client (a
        # file answer does, e.g. after the first export of a box model)
        self.complete = not _has_body(scope)
        self.cut = False
        self.answered = False  # the 408 went out
        self.message = ""
        self.response_started = False
        content_type = next((v for k, v in scope.get("headers", ()) if k == b"content-type"), b"")
        self.what = "upload" if content_type.lower().startswith(b"multipart/") else "request body"

    def channels(self) -> tuple[Receive, Send]:
        return self.receive, self.send

    def _allowed_until(self) -> tuple[float, str]:
        """The moment the body must be complete by (given what arrived so far), and which rule sets it."""
        rate_limit = self.started + self.limits.idle_s + self.received / self.limits.min_rate
        total_limit = self.started + self.limits.deadline_s
        return (rate_limit, "rate") if rate_limit < total_limit else (total_limit, "deadline")

    async def receive(self) -> Message:
        if self.complete:
            return await self.receive_upstream()  # e.g. waiting for a disconnect while streaming an answer
        if self.cut:
            return {"type": "http.disconnect"}
        until, rule = self._allowed_until()
        wait = until - time.monotonic()
        if wait > self.limits.idle_s:
            wait, rule = self.limits.idle_s, "idle"
        message: Message | None = None
        if wait > 0:
            with anyio.move_on_after(wait):
                message = await self.receive_upstream()
        if message is None:
            self._cut(rule)
            return {"type": "http.disconnect"}
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            if not message.get("more_body", False):
                self.complete = True
        else:
            self.complete = True
        return message

    async def send(self, message: Message) -> None:
        if self.cut and not self.response_started:
            await self.answer_if_cut()  # the 408 replaces the route's answer to a client it saw go away
            return
        if message["type"] == "http.response.start":
            self.response_started = True
        await self.send_upstream(message)

    async def answer_if_cut(self) -> None:
        """Send the 408 of a cut body, once, unless an answer had started before the cut."""
        if not self.cut or self.answered or self.response_started:
            return
        self.answered = True
        body = json.dumps(error_body(408, self.message)).encode()
        await self.send_upstream({
            "type": "http.response.start",
            "status": 408,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close")],
        })
        await self.send_upstream({"type": "http.response.body", "body": body, "more_body": True})
        await self._linger()
        await self.send_upstream({"type": "http.response.body", "body": b"", "more_body": False})  # then closed

    async def _linger(self) -> None:
        """Read and drop the rest of the body for a moment, with the 408 already sent (see the module)."""
        until = time.monotonic() + LINGER_S
        while (left := until - time.monotonic()) > 0:
            message: Message | None = None
            with anyio.move_on_after(min(left, LINGER_QUIET_S)):
                message = await self.receive_upstream()
            if message is None or message["type"] != "http.request" or not message.get("more_body", False):
                return

    def _cut(self, rule: str) -> None:
        self.cut = True
        elapsed = time.monotonic() - self.started
        if rule == "idle":
            message = (f"the {self.what} stalled: nothing arrived for {self.limits.idle_s:g} s, so the server gave up "
                       "on it and removed what it had received; send it again (the server's --body-timeout-s "
                       "option sets this wait)")
        elif rule == "rate":
            message = (f"the {self.what} arrived too slowly: {self.received} bytes in {elapsed:.0f} s, below the "
                       f"server's minimum of {self.limits.min_rate / 1024:g} KB/s, so the server gave up on it and "
                       "removed what it had received; send it again over a faster link (the server's "
                       "--body-min-rate-kb-s option sets the minimum)")
        else:
            message = (f"the {self.what} took longer than the server's limit of {self.limits.deadline_s:g} s, so the "
                       "server gave up on it and removed what it had received; send it again over a faster link "
                       "(the server's --body-deadline-s option sets the limit)")
        logger.warning("a request body was cut after %.1f s and %d bytes (%s)", elapsed, self.received, rule)
        self.message = message
