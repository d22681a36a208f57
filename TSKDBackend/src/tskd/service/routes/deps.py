"""What every route needs: the :class:`~tskd.service.core.Service` of the app."""

from __future__ import annotations

from fastapi import Request

from tskd.service.core import Service

__all__ = ["service"]


def service(request: Request) -> Service:
    """The service object stored on the app (a FastAPI dependency)."""
    return request.app.state.service
