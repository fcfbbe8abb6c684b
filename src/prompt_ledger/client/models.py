"""Typed results of the client: one model per response body of the API (SPEC §6).

These mirror the server's response schemas field for field (a test compares them with the
server's OpenAPI document) but are the client's own: they ignore fields they do not know, so
an older client keeps working against a newer server, and importing them does not pull in the
server's database layer. Models are immutable.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

PromptMode = Literal["full", "tracking"]
VersionStatus = Literal["draft", "active", "deprecated"]
VersionType = Literal["text", "chat"]
ExecutionMode = Literal["sync", "async"]
ExecutionStatus = Literal["queued", "running", "succeeded", "failed", "canceled"]
EventType = Literal["created", "version_created", "activated", "mode_converted", "label_moved"]
Change = Literal["created", "new_version", "unchanged", "reactivated"]
AnalyticsMode = Literal["all", "full", "tracking"]
GroupBy = Literal["version", "model", "label"]

FINISHED_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})

T = TypeVar("T")


class ApiModel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


# --- prompts (full mode) --------------------------------------------------------------------


class VersionSummary(ApiModel):
    """A prompt version without its text (as in prompt lists)."""

    version_number: int
    type: VersionType = "text"
    checksum: str
    status: VersionStatus
    variables: list[str]
    metadata: dict[str, Any]
    created_at: datetime


class Version(VersionSummary):
    """An immutable prompt version: its content, checksum (sha256) and status.

    A ``text`` version has ``template_source``; a ``chat`` version has ``messages``
    (``template_source`` is ``None``). Either may carry the model ``config`` it was written
    for and a ``variables_schema`` (JSON Schema) for its variables.
    """

    template_source: str | None
    messages: list[dict[str, Any]] | None = None
    config: dict[str, Any] | None = None
    variables_schema: dict[str, Any] | None = None


class PromptInfo(ApiModel):
    """The prompt a resolved version belongs to."""

    name: str
    mode: PromptMode
    description: str | None
    created_at: datetime
    updated_at: datetime


class ResolvedVersion(Version):
    """``GET /v1/prompts/{name}/resolve`` of one version: the version, its prompt and the
    label it was resolved by (``None`` for a version number)."""

    prompt: PromptInfo
    label: str | None


class Prompt(ApiModel):
    """A prompt and its active version (``None`` while it only has drafts)."""

    name: str
    mode: PromptMode
    description: str | None
    created_at: datetime
    updated_at: datetime
    active_version: Version | None


class PromptSummary(ApiModel):
    """A prompt as listed: the active version comes without its template text."""

    name: str
    mode: PromptMode
    description: str | None
    created_at: datetime
    updated_at: datetime
    active_version: VersionSummary | None


class SavedPrompt(ApiModel):
    """The answer to a save: the version saved or reused, and whether it is new."""

    name: str
    mode: PromptMode
    description: str | None
    version: Version
    created: bool


class SplitEntry(ApiModel):
    """One variant of a traffic split: a version and its share of the traffic (percent)."""

    version: int
    weight: int


class LabelTarget(ApiModel):
    """Where a label pointed: one version, or a split."""

    version_number: int | None = None
    split: list[SplitEntry] | None = None


class PromptEvent(ApiModel):
    """One entry of a prompt's history (which version was active, or a label pointed, when).

    For ``label_moved``: ``label``, its new target (``version_number`` or ``split``; both
    ``None`` when the label was deleted) and ``previous`` (``None`` for a new label).
    """

    type: EventType
    version_number: int | None
    previous_version_number: int | None
    label: str | None = None
    split: list[SplitEntry] | None = None
    previous: LabelTarget | None = None
    created_at: datetime


class Label(ApiModel):
    """A named pointer of a prompt (``active`` is one): to a version, or to a split."""

    label: str
    version_number: int | None
    split: list[SplitEntry] | None
    updated_at: datetime


class DiffChanges(ApiModel):
    """Which parts differ between two versions, and the variables gained and lost."""

    template: bool | None
    messages: bool | None = None
    config: bool
    variables_schema: bool
    variables_added: list[str]
    variables_removed: list[str]


class Diff(ApiModel):
    """``GET /v1/prompts/{name}/diff``: ``from_`` is the body's ``from``."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    from_: int = Field(alias="from")
    to: int
    unified: str
    changes: DiffChanges


class Page(ApiModel, Generic[T]):
    """One page of a list; pass ``next_cursor`` back to get the next (``None``: last page)."""

    items: list[T]
    next_cursor: str | None


# --- executions -----------------------------------------------------------------------------


class PromptRef(ApiModel):
    name: str
    mode: PromptMode


class VersionRef(ApiModel):
    number: int
    checksum: str


class ModelRef(ApiModel):
    provider: str
    name: str


class Telemetry(ApiModel):
    prompt_tokens: int | None
    response_tokens: int | None
    latency_ms: int | None
    provider_request_id: str | None
    cost_usd: float | None = None
    """USD; ``None`` when no price is known or the provider reported no tokens."""
    price_source: str | None = None
    """``"model"`` (the model's pricing) or the price library and its version."""
    time_to_first_token_ms: int | None = None
    """Streamed runs only (SPEC §10.1)."""


class ExecutionError(ApiModel):
    """Why an execution failed (or ``truncated`` / ``canceled``); ``type`` as in SPEC §6."""

    type: str
    message: str


class Execution(ApiModel):
    """One row of the ledger: what ran, with which text and parameters, and what came back.

    ``replayed`` is not part of the body: it is ``True`` when the server answered from an
    earlier request with the same ``Idempotency-Key`` (header ``Idempotent-Replayed``).
    """

    id: uuid.UUID
    status: ExecutionStatus
    execution_mode: ExecutionMode
    prompt: PromptRef
    version: VersionRef
    label: str | None = None  # the label it was run by (SPEC §9.2)
    subject: str | None = None  # the subject that chose a split's variant
    model: ModelRef
    variables: dict[str, Any]
    rendered_prompt: str
    rendered_messages: list[dict[str, str]] | None = None  # a chat's messages as sent
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
    replayed: bool = Field(default=False, exclude=True)

    @property
    def finished(self) -> bool:
        """True once the execution can no longer change (succeeded, failed or canceled)."""
        return self.status in FINISHED_STATUSES


class Submission(ApiModel):
    """The answer to an async submit: the id to poll (or to pass to ``wait``)."""

    execution_id: uuid.UUID
    status: ExecutionStatus
    replayed: bool = Field(default=False, exclude=True)


# --- tracking mode --------------------------------------------------------------------------


class RegisteredPrompt(ApiModel):
    """What ``register-code`` did with one prompt of the batch."""

    name: str
    version_number: int
    checksum: str
    change: Change
    previous_version_number: int | None


class HistoryVersion(ApiModel):
    version_number: int
    checksum: str
    template_hash: str
    status: VersionStatus
    created_at: datetime
    execution_count: int
    last_executed_at: datetime | None


class History(ApiModel):
    """A prompt's versions, newest first, with how often each ran."""

    name: str
    mode: PromptMode
    versions: list[HistoryVersion]


# --- analytics and operations ---------------------------------------------------------------


class Stats(ApiModel):
    """Execution statistics over a window; averages and p95 are ``None`` without data."""

    executions: int
    succeeded: int
    failed: int
    avg_latency_ms: float | None
    p95_latency_ms: int | float | None
    prompt_tokens: int
    response_tokens: int
    cost_usd: float = 0.0
    """USD: the sum of the known costs."""


class GroupStats(Stats):
    """A part of a prompt's executions (``analytics(group_by=...)``): ``version``, ``model``
    or ``label`` says which (``label`` is ``None`` for the runs that named no label)."""

    version: int | None = None
    model: ModelRef | None = None
    label: str | None = None


class PromptStats(Stats):
    name: str
    mode: PromptMode
    groups: list[GroupStats] | None = None
    """With ``group_by``: this prompt's executions per version or model, most first."""


class ModeCounts(ApiModel):
    full: int
    tracking: int


class ModeStats(ApiModel):
    full: Stats
    tracking: Stats


class Analytics(ApiModel):
    """Usage per mode and per prompt (prompts most-executed first)."""

    mode: AnalyticsMode
    total_executions: int
    prompts_by_mode: ModeCounts
    by_mode: ModeStats
    prompts: list[PromptStats]


# --- models ---------------------------------------------------------------------------------


class Pricing(ApiModel):
    """USD per million tokens; cached input costs the input price when not set."""

    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None = None


class Model(ApiModel):
    """A registered model, as ``GET /v1/models`` lists it (OpenAI's model object plus
    PromptLedger's fields). ``created`` is ``True`` when ``put_model`` added it."""

    id: str
    object: Literal["model"] = "model"
    owned_by: str
    provider: str
    max_tokens: int
    supports_streaming: bool
    is_active: bool
    pricing: Pricing | None
    created: bool = Field(default=False, exclude=True)

    @property
    def name(self) -> str:
        return self.id


class ModelList(ApiModel):
    object: Literal["list"] = "list"
    data: list[Model]


class Health(ApiModel):
    """``/health`` (``status: healthy``) or ``/health/ready`` (``status: ready`` and parts)."""

    model_config = ConfigDict(frozen=True, extra="allow")

    status: str


# --- streamed runs (SPEC §10.1) -----------------------------------------------------------


class StreamStarted(ApiModel):
    """The first event: the execution row is recorded (``running``)."""

    event: Literal["execution"] = "execution"
    id: uuid.UUID
    status: ExecutionStatus


class StreamDelta(ApiModel):
    """A piece of the answer, as the provider streamed it."""

    event: Literal["delta"] = "delta"
    text: str


class StreamDone(ApiModel):
    """The last event of a successful stream: the execution as ``get_execution`` returns it
    (also the only event of an idempotent replay, with ``execution.replayed`` set)."""

    event: Literal["done"] = "done"
    execution: Execution


class StreamFailed(ApiModel):
    """The last event of a failed stream (the provider failed or the stream broke off): the
    error (``code`` is the execution's ``error.type``) and the ``failed`` execution, which
    keeps the text received before the failure."""

    event: Literal["error"] = "error"
    code: str
    message: str
    execution: Execution | None = None


StreamEvent = StreamStarted | StreamDelta | StreamDone | StreamFailed
