"""Every error leaves the API as ``{"error": {"code", "message", "details"}}`` (SPEC §6)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException

from prompt_ledger.errors import (
    BadRequest,
    NotFound,
    PayloadTooLarge,
    PromptLedgerError,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from prompt_ledger.logging import get_logger
from prompt_ledger.schemas.common import ErrorResponse

log = get_logger(__name__)

# Framework-raised statuses (unknown route, wrong method, body limit) and their codes.
_CODES_BY_STATUS = {
    BadRequest.status: BadRequest.code,
    Unauthorized.status: Unauthorized.code,
    NotFound.status: NotFound.code,
    405: "method_not_allowed",  # not a spec code (docs/decisions.md), so no errors.py class
    PayloadTooLarge.status: PayloadTooLarge.code,
    ValidationFailed.status: ValidationFailed.code,
    Unavailable.status: Unavailable.code,
}


def error_response(
    status: int, code: str, message: str, details: dict[str, Any] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    return JSONResponse(body, status_code=status)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` for a route: each status documented with the envelope."""
    documented = {401, 422, *statuses}
    return {
        status: {"model": ErrorResponse, "description": HTTPStatus(status).phrase}
        for status in sorted(documented)
    }


async def _domain_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, PromptLedgerError)
    return error_response(exc.status, exc.code, exc.message, exc.details)


async def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {"loc": list(err.get("loc", ())), "msg": err.get("msg", ""), "type": err.get("type", "")}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(part) for part in first["loc"])
    return error_response(
        422,
        "validation_error",
        f"{where}: {first['msg']}" if where else str(first["msg"]),
        {"errors": errors},
    )


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES_BY_STATUS.get(exc.status_code, "bad_request")
    if exc.status_code == 404:
        message = f"no route {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    response = error_response(exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    return response


async def _database_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DBAPIError)
    if isinstance(exc, OperationalError) or exc.connection_invalidated:
        log.warning("database_unavailable", path=request.url.path, error=type(exc.orig).__name__)
        return error_response(
            Unavailable.status, Unavailable.code, "the database is not reachable; retry later"
        )
    return await _unexpected_error(request, exc)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", path=request.url.path, exc_info=exc)
    return error_response(500, "internal", "internal error; the server log has the details")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PromptLedgerError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(OSError, _database_error_or_unexpected)
    app.add_exception_handler(Exception, _unexpected_error)


async def _database_error_or_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """asyncpg raises plain OSError (connection refused) when PostgreSQL is down."""
    if isinstance(exc, ConnectionError | OSError):
        log.warning("database_unavailable", path=request.url.path, error=type(exc).__name__)
        return error_response(
            Unavailable.status, Unavailable.code, "a backing service is not reachable; retry later"
        )
    return await _unexpected_error(request, exc)
