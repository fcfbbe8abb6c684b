"""Shared field types and the error envelope."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# SPEC §3: 1-128 chars of A-Za-z0-9._-, starting with a letter or digit.
PROMPT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"


def _reject_nul(value: Any) -> Any:
    """PostgreSQL cannot store NUL in text or JSONB; refuse it anywhere in a value."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                raise ValueError("text must not contain NUL (\\u0000) characters")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


PromptName = Annotated[str, Field(pattern=PROMPT_NAME_PATTERN)]
Text = Annotated[str, AfterValidator(_reject_nul)]
JsonObject = Annotated[dict[str, Any], AfterValidator(_reject_nul)]


class StrictModel(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorResponse(BaseModel):
    error: ErrorBody
