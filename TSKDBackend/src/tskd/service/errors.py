"""HTTP-facing errors: a status code and a message that says what is wrong and what to do.

Service code raises these; :func:`install_error_handlers` turns them (and the data layer's
:class:`~tskd.errors.TSKDError`, request validation errors, unknown routes and methods, and
unexpected failures) into one body, :class:`~tskd.service.schemas.ErrorOut`:
``{"detail": message, "code": kind}``, ``code`` being the status's name in :data:`CODES`. Routes
declare the statuses they can answer with :func:`error_responses`, so ``/openapi.json`` says
what a client can get (docs/service-api.md explains each for client authors).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from tskd.errors import DownloadError, TSKDError
from tskd.service.schemas import ErrorOut

__all__ = [
    "ServiceError",
    "BadRequest",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "Unprocessable",
    "install_error_handlers",
    "error_body",
    "error_responses",
    "CODES",
]

logger = logging.getLogger(__name__)

#: The ``code`` of an error body, by status, and what the status means for a client.
CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "malformed request: a form field, file name, case name or query value is not "
                         "acceptable (the detail names it)"),
    401: ("unauthorized", "the server has a token and the request did not send 'Authorization: Bearer <token>' "
                          "with it"),
    403: ("forbidden", "a web page of another site (its Origin header) may not call a server listening on this "
                       "machine only"),
    404: ("not_found", "no project, case, job, model, checkpoint or route of that name or id"),
    405: ("method_not_allowed", "the path exists but not with this method (the Allow header lists those it has)"),
    408: ("timeout", "a request body (an upload, a JSON body) stalled, trickled below the server's minimum rate "
                     "or took longer than its deadline (--body-timeout-s, --body-min-rate-kb-s, --body-deadline-s); "
                     "what had arrived was removed, send it again"),
    409: ("conflict", "the request is valid but the current state does not allow it (a name in use, a job not "
                      "in a state that can be cancelled or resumed, a project without labelled cases, weights in "
                      "use)"),
    421: ("misdirected", "a server listening on this machine only answers requests addressed to a loopback name "
                         "(localhost, 127.0.0.1, [::1]); the Host header named another"),
    413: ("too_large", "an uploaded file is larger than the server accepts (the detail names the limit and the "
                      "'tskd serve' option that sets it)"),
    415: ("unsupported_type", "an uploaded file's type is not one this route reads (the detail lists those it reads)"),
    422: ("invalid", "the request's values are refused: a JSON field out of range or unknown, an image that "
                    "cannot be read or does not match, settings the pipeline rejects (the detail names the field)"),
    500: ("internal", "the server failed; the detail says where its log is"),
    502: ("upstream", "a server the backend depends on (the foundation weights' host) failed"),
    503: ("busy", "the server is busy with as much of this kind of work as it takes at once; ask again after "
                  "the Retry-After header's seconds"),
}


def error_body(status: int, message: str) -> dict[str, str]:
    """The body of every error response: ``{"detail": message, "code": CODES[status][0]}``."""
    code = CODES.get(status, (f"http_{status}", ""))[0]
    return {"detail": message, "code": code}


def error_responses(*statuses: int, validation: bool = True) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route that can answer with ``statuses`` (each an :class:`ErrorOut`).

    Always declared as well: 403 and 421, which any route answers on a loopback server to a
    request from another site's page (:mod:`tskd.service.localonly`), 408, which any request
    whose body stalls or trickles gets (:mod:`tskd.service.bodylimits`), and (unless
    ``validation`` is false, for a route without parameters) 422, which replaces FastAPI's
    default validation-error schema, not what this service answers.
    """
    always = {403, 408, 421} | ({422} if validation else set())
    return {status: {"model": ErrorOut, "description": CODES[status][1]}
            for status in sorted(set(statuses) | always)}


class ServiceError(Exception):
    """An error answered with ``status`` and ``{"detail": message}``."""

    status = 500

    def __init__(self, message: str, status: int | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.headers = dict(headers or {})
        if status is not None:
            self.status = status


class BadRequest(ServiceError):
    status = 400


class NotFound(ServiceError):
    status = 404


class Conflict(ServiceError):
    status = 409


class PayloadTooLarge(ServiceError):
    status = 413


class UnsupportedMediaType(ServiceError):
    status = 415


class Unprocessable(ServiceError):
    status = 422


def _field(loc: Any) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "request"


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for error in exc.errors()[:5]:
        problems.append(f"{_field(error.get('loc', ()))}: {error.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(problems)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that give every error response the ``{"detail": "..."}`` shape."""

    @app.exception_handler(ServiceError)
    async def _service_error(request: Request, exc: ServiceError) -> JSONResponse:
        return JSONResponse(error_body(exc.status, exc.message), status_code=exc.status, headers=exc.headers or None)

    @app.exception_handler(DownloadError)
    async def _upstream(request: Request, exc: DownloadError) -> JSONResponse:
        return JSONResponse(error_body(502, str(exc)), status_code=502)  # the weights' server failed, not the request

    @app.exception_handler(TSKDError)
    async def _tskd_error(request: Request, exc: TSKDError) -> JSONResponse:
        return JSONResponse(error_body(422, str(exc)), status_code=422)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(422, _validation_message(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "error"
        headers = dict(exc.headers or {})
        if exc.status_code == 400 and detail == "There was an error parsing the body":  # FastAPI's words
            detail = "the request body is not valid JSON; send a JSON object with Content-Type: application/json"
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no such route: {request.method} {request.url.path}"
        if exc.status_code == 405:
            allowed = allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not allowed on {request.url.path}; it allows {', '.join(allowed)}"
        return JSONResponse(error_body(exc.status_code, detail), status_code=exc.status_code, headers=headers)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse(error_body(500, "the server failed on this request; its log (the 'tskd serve' console) "
                                            "has the details"), status_code=500)


def allowed_methods(request: Request) -> list[str]:
    """Every method of every route whose path matches the request's (Starlette's own 405 names
    only the first such route's, e.g. ``GET`` where the path also has ``PATCH`` and ``DELETE``)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        route_methods = getattr(route, "methods", None)
        if not route_methods:
            continue
        scope = dict(request.scope, method=next(iter(route_methods)))
        match, _ = route.matches(scope)
        if match == Match.FULL:
            methods |= set(route_methods)
    return sorted(methods)
