"""Domain errors: each carries the HTTP status and the spec's error code.

Services raise these; one handler in ``api/errors.py`` renders them as
``{"error": {"code", "message", "details"}}``. Nothing else maps exceptions to responses.
"""

from __future__ import annotations

from typing import Any, ClassVar


class PromptLedgerError(Exception):
    """Base class: ``status`` and ``code`` are fixed per subclass, the message per raise."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class BadRequest(PromptLedgerError):
    status = 400
    code = "bad_request"


class Unauthorized(PromptLedgerError):
    status = 401
    code = "unauthorized"


class Forbidden(PromptLedgerError):
    status = 403
    code = "forbidden"


class NotFound(PromptLedgerError):
    status = 404
    code = "not_found"


class ModeMismatch(PromptLedgerError):
    status = 409
    code = "mode_mismatch"


class IdempotencyKeyInUse(PromptLedgerError):
    status = 409
    code = "idempotency_key_in_use"


class NotCancelable(PromptLedgerError):
    status = 409
    code = "not_cancelable"


class PayloadTooLarge(PromptLedgerError):
    status = 413
    code = "payload_too_large"


class ValidationFailed(PromptLedgerError):
    status = 422
    code = "validation_error"


class InvalidTemplate(PromptLedgerError):
    status = 422
    code = "invalid_template"


class RenderError(PromptLedgerError):
    status = 422
    code = "render_error"


class PromptTooLarge(PromptLedgerError):
    status = 422
    code = "prompt_too_large"


class UnknownModel(PromptLedgerError):
    status = 422
    code = "unknown_model"


class IdempotencyKeyReused(PromptLedgerError):
    status = 422
    code = "idempotency_key_reused"


class Unavailable(PromptLedgerError):
    status = 503
    code = "unavailable"
