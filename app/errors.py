"""Every error leaves the service as {"error": {"message", "type", "code"[, "param"]}}."""

import logging
import socket
from typing import Any

import asyncpg
import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("app.errors")

# The `type` families follow the OpenAI error object our users already parse.
TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}
# As OpenAI (and document 001) answer them: a model the request names that does not exist, or cannot
# be served here, is a fault of the request, whatever the status says.
TYPES_BY_CODE = {
    "model_not_found": "invalid_request_error",
    "provider_not_configured": "invalid_request_error",
}
CODES = {
    400: "validation_error",
    401: "invalid_api_key",
    403: "insufficient_scope",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
    503: "service_unavailable",
}


class ErrorObject(msgspec.Struct, omit_defaults=True):
    message: str
    type: str
    code: str
    param: str | None = None


class AppError(Exception):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.code
        self.status = status or self.status
        self.param = param
        self.headers = headers


class InvalidRequest(AppError):
    status = 400
    code = "validation_error"


class Unauthenticated(AppError):
    status = 401
    code = "invalid_api_key"


class Forbidden(AppError):
    status = 403
    code = "insufficient_scope"


class NotFound(AppError):
    status = 404
    code = "not_found"


class Conflict(AppError):
    status = 409
    code = "conflict"


class Unavailable(AppError):
    status = 503
    code = "service_unavailable"


def error_type(status: int, code: str) -> str:
    return TYPES_BY_CODE.get(code) or TYPES.get(status, "api_error")


def error_object(error: AppError) -> ErrorObject:
    return ErrorObject(
        message=error.message, type=error_type(error.status, error.code), code=error.code, param=error.param
    )


def error_body(status: int, code: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": message, "type": error_type(status, code), "code": code}
    if param is not None:
        error["param"] = param
    return {"error": error}


def handle_app_error(_: Request, exc: AppError) -> Response:
    return Response(
        error_body(exc.status, exc.code, exc.message, exc.param), status_code=exc.status, headers=exc.headers
    )


def handle_http_exception(_: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        message, param = _describe_validation(exc)
        return Response(error_body(400, "validation_error", message, param), status_code=400)
    if status >= 500:
        return _internal_error(_, exc)
    return Response(
        error_body(status, CODES.get(status, "bad_request"), exc.detail or "Request failed"),
        status_code=status,
        headers=exc.headers,
    )


# PostgreSQL cannot store these characters in text; a request carrying one is bad input, not a crash.
BAD_TEXT = (
    asyncpg.exceptions.CharacterNotInRepertoireError,
    asyncpg.exceptions.UntranslatableCharacterError,
)
# The database is down, restarting or out of connections: the client should retry shortly.
UNAVAILABLE = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.InterfaceError,
    ConnectionError,
    TimeoutError,
    FileNotFoundError,  # a Unix-socket URL whose server is down: its socket file is gone
    socket.gaierror,  # a host name that does not resolve (DNS down)
)
# Values PostgreSQL refuses (a time past year 9999, a number out of range): bad input, not a crash.
BAD_VALUE = (asyncpg.exceptions.DataError, OverflowError)


def database_cause(exc: BaseException) -> BaseException:
    """SQLAlchemy wraps driver errors; the driver's exception says what happened."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return getattr(exc.orig, "__cause__", None) or exc.orig
    return exc


def handle_unexpected(request: Request, exc: Exception) -> Response:
    cause = database_cause(exc)
    if isinstance(cause, BAD_TEXT):
        return Response(error_body(400, "validation_error", "Text must not contain NUL characters"), status_code=400)
    if isinstance(cause, BAD_VALUE):
        log.info("value refused on %s %s: %r", request.method, request.url.path, cause)
        return Response(error_body(400, "validation_error", "A value is out of the range accepted"), status_code=400)
    if isinstance(cause, UNAVAILABLE) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
        log.warning("database unavailable on %s %s: %r", request.method, request.url.path, cause)
        body = error_body(503, "database_unavailable", "The database is unavailable; retry shortly")
        return Response(body, status_code=503, headers={"Retry-After": "1"})
    return _internal_error(request, exc)


def _internal_error(request: Request, exc: Exception) -> Response:
    # Internals stay in the log; the client learns only that it was not their fault.
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    body = error_body(500, "internal_error", "Internal server error")
    return Response(body, status_code=HTTP_500_INTERNAL_SERVER_ERROR)


def _describe_validation(exc: ValidationException) -> tuple[str, str | None]:
    """Name the offending field: Litestar puts {message, key, source} items in `extra`."""
    items = exc.extra if isinstance(exc.extra, list) else []
    for item in items:
        if isinstance(item, dict):
            # Parameters renamed after Python keywords (`from_`, `format_`) are named as sent.
            key = str(item.get("key") or "").rstrip("_")
            message = item.get("message") or exc.detail
            if key:
                return f"Invalid `{key}`: {message}", str(key)
            return str(message), None
    return exc.detail or "Invalid request", None


EXCEPTION_HANDLERS = {
    AppError: handle_app_error,
    HTTPException: handle_http_exception,
    Exception: handle_unexpected,
}
