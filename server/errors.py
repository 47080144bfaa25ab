"""Domain errors of the server and the one table that maps them to HTTP.

The data plane and the repository raise these; they know nothing of HTTP. Endpoints never build
an error response by hand: `install_error_handlers` turns every error into the status of the table
and the body the Open Inference Protocol defines, `{"error": "<message>"}`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)


class ServerError(Exception):
    """Base of the errors a client can cause or observe; the message is shown to the client."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else type(self).__name__


class InvalidInput(ServerError):
    """The request is malformed: JSON, datatype, shape, data length, form fields."""


class ModelNotFound(ServerError):
    def __init__(self, name: str, version: str | None = None) -> None:
        what = f"model {name!r}" if version is None else f"model {name!r} version {version!r}"
        super().__init__(f"{what} not found")


class ModelNotReady(ServerError):
    def __init__(self, name: str) -> None:
        super().__init__(f"model {name!r} is not ready")


class UnsupportedMediaType(ServerError):
    """The body's content type, or an uploaded file's format, is not one the endpoint reads."""


class PayloadTooLarge(ServerError):
    """The body is over the configured limit, or the request holds too many images."""


class InferenceFailed(ServerError):
    """The forward pass itself failed: a server fault, never the client's."""


class NotCaptured(ServerError):
    """Feedback names a request id that no server of this deployment has captured."""


class UnknownClass(ServerError):
    """Feedback names a label outside the model's classes; the message lists them."""


class CaptureOff(ServerError):
    """Feedback or capture status asked of a server that does not capture."""


class CaptureStorageFailed(ServerError):
    """The capture destination could not be read or written while answering feedback or status."""


class Overloaded(ServerError):
    """More images wait for the model than it may queue: shed load now rather than answer late."""

    retry_after_seconds = 1


# The one table from domain errors to HTTP status codes.
HTTP_STATUS: dict[type[ServerError], int] = {
    InvalidInput: 400,
    ModelNotFound: 404,
    PayloadTooLarge: 413,
    NotCaptured: 404,
    CaptureOff: 409,
    UnsupportedMediaType: 415,
    UnknownClass: 422,
    InferenceFailed: 500,
    ModelNotReady: 503,
    CaptureStorageFailed: 503,
    Overloaded: 503,
}


def error_response(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status_code)


def _status_of(error: ServerError) -> int:
    for kind in type(error).__mro__:
        if kind in HTTP_STATUS:
            return HTTP_STATUS[kind]
    return 500


async def _on_server_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ServerError)
    status = _status_of(error)
    if status >= 500:
        log.error("%s: %s", type(error).__name__, error.message)
    response = error_response(status, error.message)
    if isinstance(error, Overloaded):
        response.headers["Retry-After"] = str(error.retry_after_seconds)
    return response


async def _on_http_error(_: Request, error: Exception) -> JSONResponse:
    # Unknown routes (404), wrong methods (405), malformed multipart (400): same body shape.
    assert isinstance(error, StarletteHTTPException)
    response = error_response(error.status_code, str(error.detail))
    if error.headers:
        response.headers.update(error.headers)
    return response


def describe_validation(errors: Sequence[Any], location: tuple[str, ...] = ()) -> str:
    """Pydantic's errors as one message, each naming its field: `query.top_k: Input should be ...`.
    `location` is prefixed to fields validated on their own (a route's query parameters)."""
    parts = []
    for item in errors:
        where = ".".join(str(part) for part in (*location, *item.get("loc", ())) if part != "body")
        parts.append(f"{where}: {item.get('msg', 'invalid')}" if where else str(item.get("msg")))
    return "; ".join(parts) or "invalid request"


async def _on_validation_error(_: Request, error: Exception) -> JSONResponse:
    # FastAPI's default is 422 with a nested list; the protocol's clients expect 400 and a message.
    assert isinstance(error, RequestValidationError)
    return error_response(400, describe_validation(error.errors()))


async def _on_unexpected(_: Request, error: Exception) -> JSONResponse:
    log.exception("unexpected error while serving a request")
    return error_response(500, f"internal error: {type(error).__name__}")


def install_error_handlers(app: FastAPI) -> None:
    """Map every domain error (and FastAPI's own) to `{"error": ...}` with the table's status."""
    app.add_exception_handler(ServerError, _on_server_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
