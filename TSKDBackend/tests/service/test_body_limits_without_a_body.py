"""The body limits (``tskd.service.bodylimits``) leave a request without a body alone, however long its
route takes before it listens to the client (as a streamed or file answer does once the route is done).

Found when the first ``GET /checkpoints/litemedsam/box-model`` (the LiteMedSAM export, "about a minute on
two cores") took longer than ``body_timeout_s`` on a busy machine: the file answer's disconnect listener
was then told the client had gone, and the client got a 408 saying its (empty) body arrived too slowly.
"""

from __future__ import annotations

import anyio

from tskd.service.bodylimits import BodyDeadlineMiddleware


def _run(headers: list[tuple[bytes, bytes]], route_s: float, upstream: list[dict]) -> tuple[list[dict], list[dict]]:
    """One request through the middleware: the route works ``route_s`` seconds, then reads the client
    once (what it gets back is returned) and answers 200."""
    seen, sent = [], []

    async def app(scope, receive, send):
        await anyio.sleep(route_s)
        seen.append(await receive())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def receive():
        if upstream:
            return upstream.pop(0)
        await anyio.sleep(3600)  # a client that sends nothing more

    async def send(message):
        sent.append(message)

    middleware = BodyDeadlineMiddleware(app, idle_s=0.2, min_rate_bytes_s=1024.0, deadline_s=5.0)
    scope = {"type": "http", "method": "GET", "path": "/x", "headers": headers}
    anyio.run(middleware, scope, receive, send)
    return seen, sent


def test_a_request_without_a_body_is_not_cut_when_its_route_outlasts_the_silence_limit():
    seen, sent = _run([(b"host", b"x")], 0.5, [{"type": "http.request", "body": b"", "more_body": False}])
    assert seen == [{"type": "http.request", "body": b"", "more_body": False}]
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [200]


def test_an_empty_declared_body_is_not_cut_either_but_a_stalled_body_still_is():
    empty = [(b"content-length", b"0")]
    seen, sent = _run(empty, 0.5, [{"type": "http.request", "body": b"", "more_body": False}])
    assert seen[0]["type"] == "http.request" and sent[0]["status"] == 200
    # a declared body that never arrives: cut as before (the route sees the client gone, the client gets 408)
    seen, sent = _run([(b"content-length", b"10")], 0.0, [])
    assert seen == [{"type": "http.disconnect"}] and sent[0]["status"] == 408
