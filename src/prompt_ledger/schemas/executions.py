"""Execution requests and the execution object (SPEC §6)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field, model_validator

if TYPE_CHECKING:
    from prompt_ledger.services.executions import ExecutionRecord

from prompt_ledger.db.tables import ExecutionMode, ExecutionStatus, PromptMode, ProviderName
from prompt_ledger.schemas.common import MAX_INT32, JsonObject, PromptName, StrictModel, Text
from prompt_ledger.schemas.labels import LabelName, Subject


class Params(StrictModel):
    """Generation parameters; an unknown name is a 422, not silently ignored."""

    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(gt=0, le=1)] | None = None
    top_k: Annotated[int, Field(ge=1)] | None = None
    max_new_tokens: Annotated[int, Field(ge=1)] | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None


class ExecutionInput(StrictModel):
    """What to run; shared by ``executions:run``/``:submit`` and the tracking execute route."""

    version: Annotated[int, Field(ge=1, le=MAX_INT32)] | None = None
    # SPEC §9.2: run the version a label points to (instead of ``version``); ``subject``
    # keeps a split label's choice stable for one user or session.
    label: LabelName | None = None
    subject: Subject | None = None
    variables: JsonObject = Field(default_factory=dict)
    # May be omitted when the version's config names a model (SPEC §9.1).
    model_name: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    # Not sent: the version config's provider, else openai (see ``given_provider``).
    provider: ProviderName = ProviderName.OPENAI
    params: Params = Field(default_factory=Params)
    metadata: JsonObject = Field(default_factory=dict)
    # SPEC §10.1: answer as Server-Sent Events (sync runs only). Not part of the
    # idempotency fingerprint: it changes how the answer is delivered, not what is run.
    stream: bool = False

    @model_validator(mode="after")
    def _label_or_version(self) -> ExecutionInput:
        if self.label is not None and self.version is not None:
            raise ValueError("give either `version` or `label`, not both")
        return self

    @property
    def given_provider(self) -> ProviderName | None:
        """The provider the request named, None when it named none (the default is kept in
        the schema so idempotency fingerprints of earlier requests do not change)."""
        return self.provider if "provider" in self.model_fields_set else None


class RunRequest(ExecutionInput):
    prompt_name: PromptName


class TrackedExecuteRequest(ExecutionInput):
    mode: ExecutionMode = ExecutionMode.SYNC

    @model_validator(mode="after")
    def _stream_is_sync(self) -> TrackedExecuteRequest:
        if self.stream and self.mode == ExecutionMode.ASYNC:
            raise ValueError("`stream` is for `mode: sync` only")
        return self


class SubmitResponse(BaseModel):
    execution_id: uuid.UUID
    status: ExecutionStatus


class PromptRef(BaseModel):
    name: str
    mode: PromptMode


class VersionRef(BaseModel):
    number: int
    checksum: str


class ModelRef(BaseModel):
    provider: ProviderName
    name: str


class Telemetry(BaseModel):
    prompt_tokens: int | None
    response_tokens: int | None
    latency_ms: int | None
    provider_request_id: str | None
    cost_usd: float | None = Field(
        description="USD; null when no price is known or the provider reported no tokens"
    )
    price_source: str | None = Field(
        description='"model" (the model\'s pricing) or the price library and its version'
    )
    time_to_first_token_ms: int | None = Field(
        default=None, description="streamed runs only (SPEC §10.1); null otherwise"
    )


class ExecutionError(BaseModel):
    type: str
    message: str


class ExecutionOut(BaseModel):
    id: uuid.UUID
    status: ExecutionStatus
    execution_mode: ExecutionMode
    prompt: PromptRef
    version: VersionRef
    label: str | None
    subject: str | None
    model: ModelRef
    variables: dict[str, Any]
    rendered_prompt: str
    # chat versions: the exact messages sent; null for text versions
    rendered_messages: list[dict[str, str]] | None = None
    params: dict[str, Any]
    response_text: str | None
    telemetry: Telemetry
    params_dropped: list[str]
    error: ExecutionError | None
    attempts: int
    idempotency_key: str | None
    metadata: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, record: ExecutionRecord) -> ExecutionOut:
        return _execution_out(record)


class ExecutionPage(BaseModel):
    items: list[ExecutionOut]
    next_cursor: str | None


def _execution_out(record: ExecutionRecord) -> ExecutionOut:
    e = record.execution
    return ExecutionOut(
        id=e.id,
        status=e.status,
        execution_mode=e.execution_mode,
        prompt=PromptRef(name=record.prompt.name, mode=record.prompt.mode),
        version=VersionRef(number=record.version.version_number, checksum=record.version.checksum),
        label=e.label,
        subject=e.subject,
        model=ModelRef(provider=record.model.provider, name=record.model.model_name),
        variables=e.variables,
        rendered_prompt=e.rendered_prompt,
        rendered_messages=e.rendered_messages,
        params=e.params,
        response_text=e.response_text,
        telemetry=Telemetry(
            prompt_tokens=e.prompt_tokens,
            response_tokens=e.response_tokens,
            latency_ms=e.latency_ms,
            provider_request_id=e.provider_request_id,
            cost_usd=float(e.cost_usd) if e.cost_usd is not None else None,
            price_source=e.price_source,
            time_to_first_token_ms=e.time_to_first_token_ms,
        ),
        params_dropped=e.params_dropped,
        error=ExecutionError(type=e.error_type, message=e.error_message or "")
        if e.error_type
        else None,
        attempts=e.attempts,
        idempotency_key=e.idempotency_key,
        metadata=e.metadata_,
        created_at=e.created_at,
        started_at=e.started_at,
        completed_at=e.completed_at,
    )
