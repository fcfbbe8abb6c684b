"""Shared field types and the error envelope."""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from prompt_ledger.domain import MAX_INT32 as MAX_INT32  # re-exported

# SPEC §3: 1-128 chars of A-Za-z0-9._-, starting with a letter or digit.
PROMPT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


# Deeper JSON than this is refused (422): the ledger stores, fingerprints and returns these
# values, and serialisers give up a little past 250 levels.
MAX_JSON_DEPTH = 220


def _reject_unstorable(value: Any) -> Any:
    """Refuse what the ledger cannot store or return: NUL characters (PostgreSQL text and
    JSONB reject them), NaN/Infinity (not JSON; JSONB rejects them) and absurd nesting."""
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL (\\u0000) characters")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise ValueError("numbers must be finite (no NaN or Infinity)")
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise ValueError(f"JSON is nested deeper than {MAX_JSON_DEPTH} levels")
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return value


PromptName = Annotated[str, Field(pattern=PROMPT_NAME_PATTERN)]
Text = Annotated[str, AfterValidator(_reject_unstorable)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_reject_unstorable)]


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields (a typo is a 422, not silently ignored) and
    non-finite numbers (not JSON, and PostgreSQL's JSONB rejects them)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody
