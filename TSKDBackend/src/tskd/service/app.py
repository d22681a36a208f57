"""The FastAPI application: routes under ``/api/v1``, error handlers, the token check, life cycle."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator, Callable

from fastapi import FastAPI

from tskd import __version__
from tskd.service.auth import BearerTokenMiddleware
from tskd.service.bodylimits import BodyDeadlineMiddleware
from tskd.service.core import Service
from tskd.service.errors import install_error_handlers
from tskd.service.localonly import LocalOnlyMiddleware
from tskd.service.routes import ROUTERS
from tskd.service.settings import API_PREFIX, is_loopback

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

_DESCRIPTION = """\
The SlicerTSKD backend: keeps projects and their labelled cases, trains students with
task-specific knowledge distillation as background jobs, hands out the trained students and
segments images with them. Errors answer `{"detail": "what is wrong and what to do", "code": "<kind>"}`.
With a token, every route except `/api/v1/health` needs `Authorization: Bearer <token>`.
"""


def create_app(service: Service, *, on_ready: Callable[[], None] | None = None) -> FastAPI:
    """The ASGI app serving ``service``.

    Starting the app (its lifespan) starts the job scheduler; stopping it stops the scheduler
    (running workers go on and are adopted by the next server). The caller closes ``service``.

    Args:
        service: the opened service.
        on_ready: called once the scheduler runs, before requests are served.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            service.scheduler.stop()
            service.checkpoints.stop()
            service.suggestions.stop()

    app = FastAPI(
        title="SlicerTSKD backend",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.service = service
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router, prefix=API_PREFIX)
    if service.settings.token:
        app.add_middleware(BearerTokenMiddleware, token=service.settings.token, open_paths=(f"{API_PREFIX}/health",))
    if is_loopback(service.settings.host):  # outermost: other sites' pages get nowhere (see localonly.py)
        app.add_middleware(LocalOnlyMiddleware, bind_host=service.settings.host)
    settings = service.settings  # outermost of all: the refusals above read bodies under its limits too
    app.add_middleware(BodyDeadlineMiddleware, idle_s=settings.body_timeout_s,
                       min_rate_bytes_s=settings.body_min_rate_kb_s * 1024, deadline_s=settings.body_deadline_s)
    return app
