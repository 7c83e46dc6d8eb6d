"""Application errors and the one place that turns any failure into the standard error body.

Every HTTP error answers `{"error": {"code", "message", "request_id"[, "details"]}}`. Raising an
`AppError` subclass is the only way handlers report failures; anything else becomes a logged
`internal_error` 500 with no stack trace in the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from server.jsonio import JSONResponse
from server.observability.logging import get_logger

log = get_logger("vonix.errors")


class AppError(Exception):
    """Base of all errors a client may see. Subclasses fix the status and the code."""

    status: int = 500
    code: str = "internal_error"
    message: str = "Something went wrong on our side."

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.message = message or self.message
        self.code = code or self.code
        self.status = status or self.status
        self.details = details
        self.headers = dict(headers or {})
        super().__init__(self.message)


class BadRequest(AppError):
    status, code, message = 400, "bad_request", "The request could not be understood."


class InvalidJson(BadRequest):
    code, message = "invalid_json", "The request body is not valid JSON."


class Unauthorized(AppError):
    status, code, message = 401, "unauthorized", "Authentication is required."


class Forbidden(AppError):
    status, code, message = 403, "forbidden", "You are not allowed to do this."


class NotFound(AppError):
    status, code, message = 404, "not_found", "Nothing here."


class Conflict(AppError):
    status, code, message = 409, "conflict", "That conflicts with existing data."


class PayloadTooLarge(AppError):
    status, code, message = 413, "payload_too_large", "The request body is too large."


class UnsupportedMediaType(AppError):
    status, code, message = 415, "unsupported_media_type", "Send the body as application/json."


class ValidationFailed(AppError):
    status, code, message = 422, "validation_failed", "Some fields are invalid."


class RateLimited(AppError):
    status, code, message = 429, "rate_limited", "Too many requests; slow down."


class ServiceUnavailable(AppError):
    status, code, message = 503, "service_unavailable", "The service is temporarily unavailable."


def request_id_of(request: Request) -> str | None:
    return request.scope.get("vonix.request_id")


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message, "request_id": request_id_of(request)}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status, headers=dict(headers or {}))


def _count(request: Request, code: str) -> None:
    tracker = getattr(getattr(request.app.state, "vonix", None), "errors", None)
    if tracker is not None:
        tracker.count_code(code)


async def handle_app_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AppError)
    _count(request, exc.code)
    if exc.status >= 500:
        log.error("app_error", code=exc.code, status=exc.status, error=exc.message)
    return error_response(request, exc.status, exc.code, exc.message, exc.details, exc.headers)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
    _count(request, code)
    message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
    if message == HTTPStatus(exc.status_code).phrase and exc.status_code == 404:
        message = "Nothing here."
    return error_response(request, exc.status_code, code, message, headers=exc.headers)


# Unexpected exceptions are handled by ErrorCaptureMiddleware (logged once, fingerprinted).
EXCEPTION_HANDLERS: dict[Any, Any] = {
    AppError: handle_app_error,
    HTTPException: handle_http_exception,
}
