"""Typed client errors: one class per error code of the API (SPEC §6), plus transport failures.

Every error the client raises is a :class:`PromptLedgerClientError` carrying ``status`` (the
HTTP status, ``None`` when no answer arrived), ``code`` (the API's error code), ``message``
(the server's text, which says what to do) and ``details``. Codes group under their status, so
``except ConflictError`` catches ``mode_mismatch``, ``idempotency_key_in_use`` and
``not_cancelable`` alike. A code this client does not know yet maps to its status's class.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

if TYPE_CHECKING:
    from prompt_ledger.client.models import Execution


class PromptLedgerClientError(Exception):
    """Base of every error the client raises.

    Attributes:
        status: HTTP status of the answer, or ``None`` when there was none (transport failure,
            wait timeout, a request refused before it was sent).
        code: the API's error code (``not_found``, ``mode_mismatch``, …) or a client-side one
            (``transport_error``, ``request_timeout``, ``wait_timeout``, ``unexpected_response``).
        message: human-readable text; for API errors, the server's message verbatim.
        details: the error's ``details`` object from the API (empty when none).
    """

    default_code: ClassVar[str] = "error"
    default_status: ClassVar[int | None] = None

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code or self.default_code
        self.details: dict[str, Any] = details or {}

    def __str__(self) -> str:
        where = f" ({self.status})" if self.status is not None else ""
        return f"{self.code}{where}: {self.message}"


# --- answers from the API -------------------------------------------------------------------


class BadRequestError(PromptLedgerClientError):
    """400 ``bad_request``: malformed Idempotency-Key, cursor, or similar."""

    default_code = "bad_request"
    default_status = 400


class UnauthorizedError(PromptLedgerClientError):
    """401 ``unauthorized``: the API key is missing or wrong."""

    default_code = "unauthorized"
    default_status = 401


class NotFoundError(PromptLedgerClientError):
    """404 ``not_found``: unknown prompt, version or execution."""

    default_code = "not_found"
    default_status = 404


class ConflictError(PromptLedgerClientError):
    """409: the request conflicts with the resource's state (see the subclasses)."""

    default_code = "conflict"
    default_status = 409


class ModeMismatchError(ConflictError):
    """409 ``mode_mismatch``: a full-mode route on a tracking prompt or the reverse."""

    default_code = "mode_mismatch"


class IdempotencyKeyInUseError(ConflictError):
    """409 ``idempotency_key_in_use``: the first request with this key is still running."""

    default_code = "idempotency_key_in_use"


class NotCancelableError(ConflictError):
    """409 ``not_cancelable``: only a queued execution can be canceled."""

    default_code = "not_cancelable"


class PayloadTooLargeError(PromptLedgerClientError):
    """413 ``payload_too_large``: the request body is over the server's limit."""

    default_code = "payload_too_large"
    default_status = 413


class UnprocessableError(PromptLedgerClientError):
    """422: the request is well-formed but cannot be carried out (see the subclasses)."""

    default_code = "unprocessable"
    default_status = 422


class ValidationError(UnprocessableError):
    """422 ``validation_error``: a field is missing, mistyped or out of range."""

    default_code = "validation_error"


class InvalidTemplateError(UnprocessableError):
    """422 ``invalid_template``: the template is not valid Jinja2."""

    default_code = "invalid_template"


class RenderError(UnprocessableError):
    """422 ``render_error``: rendering failed (a missing variable, a render too slow)."""

    default_code = "render_error"


class PromptTooLargeError(UnprocessableError):
    """422 ``prompt_too_large``: the rendered prompt is over 200 KB."""

    default_code = "prompt_too_large"


class UnknownModelError(UnprocessableError):
    """422 ``unknown_model``: no active model of that name for the provider."""

    default_code = "unknown_model"


class IdempotencyKeyReusedError(UnprocessableError):
    """422 ``idempotency_key_reused``: the key was used with another body or route."""

    default_code = "idempotency_key_reused"


class ServerError(PromptLedgerClientError):
    """5xx: the server failed; retrying later may help."""

    default_code = "internal"
    default_status = 500


class UnavailableError(ServerError):
    """503 ``unavailable``: the database or the queue is down."""

    default_code = "unavailable"
    default_status = 503


# --- failures on the client side -------------------------------------------------------------


class TransportError(PromptLedgerClientError):
    """No answer: connection refused, DNS failure, connection reset, TLS error."""

    default_code = "transport_error"


class RequestTimeoutError(TransportError):
    """The server did not answer within the client's ``timeout``."""

    default_code = "request_timeout"


class UnexpectedResponseError(PromptLedgerClientError):
    """A success status whose body is not what the API documents (wrong URL, a proxy page)."""

    default_code = "unexpected_response"


class WaitTimeoutError(PromptLedgerClientError):
    """:meth:`~prompt_ledger.client.PromptLedger.wait` gave up before the execution finished.

    Attributes:
        execution: the execution as last seen (still ``queued`` or ``running``).
    """

    default_code = "wait_timeout"

    def __init__(self, message: str, *, execution: Execution) -> None:
        super().__init__(message, details={"execution_id": str(execution.id)})
        self.execution = execution


_BY_CODE: dict[str, type[PromptLedgerClientError]] = {
    cls.default_code: cls
    for cls in (
        BadRequestError,
        UnauthorizedError,
        NotFoundError,
        ModeMismatchError,
        IdempotencyKeyInUseError,
        NotCancelableError,
        PayloadTooLargeError,
        ValidationError,
        InvalidTemplateError,
        RenderError,
        PromptTooLargeError,
        UnknownModelError,
        IdempotencyKeyReusedError,
        UnavailableError,
        ServerError,
    )
}
_BY_STATUS: dict[int, type[PromptLedgerClientError]] = {
    400: BadRequestError,
    401: UnauthorizedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableError,
    503: UnavailableError,
}


def error_class(status: int, code: str) -> type[PromptLedgerClientError]:
    """The most specific class for an answer: by code, else by status, else the base."""
    by_code = _BY_CODE.get(code)
    if by_code is not None and by_code.default_status == status:
        return by_code
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    return ServerError if status >= 500 else PromptLedgerClientError


def error_from_response(response: httpx.Response) -> PromptLedgerClientError:
    """Turn an error answer into its typed exception.

    The body is normally ``{"error": {code, message, details}}``; anything else (a proxy's
    HTML page, an empty body) keeps the status and gets code ``http_<status>``.
    """
    status = response.status_code
    try:
        envelope = response.json()["error"]
        code = str(envelope["code"])
        message = str(envelope["message"])
        details = envelope.get("details") or {}
        if not isinstance(details, dict):
            details = {"details": details}
    except (ValueError, KeyError, TypeError, json.JSONDecodeError):
        code = f"http_{status}"
        text = response.text.strip()
        message = text[:500] if text else (response.reason_phrase or "no body")
        details = {}
    return error_class(status, code)(message, status=status, code=code, details=details)


def error_from_transport(exc: httpx.TransportError, url: str) -> TransportError:
    """A clear error for a request that got no answer, naming the URL tried."""
    if isinstance(exc, httpx.TimeoutException):
        return RequestTimeoutError(
            f"no answer from {url} within the timeout ({type(exc).__name__})",
            details={"url": url},
        )
    reason = str(exc) or type(exc).__name__
    return TransportError(f"cannot reach {url}: {reason}", details={"url": url})
