"""Tracking-mode, conversion and analytics bodies (SPEC §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, Field, field_validator

from prompt_ledger.db.tables import PromptMode, ProviderName, VersionStatus
from prompt_ledger.schemas.common import JsonObject, PromptName, StrictModel, Text
from prompt_ledger.schemas.prompts import VersionContentIn
from prompt_ledger.services.analytics import Stats
from prompt_ledger.services.tracking import Change


class CodePromptIn(VersionContentIn):
    """One code-owned prompt; ``template_hash``, if given, is the checksum the version will
    have (for plain text, the sha256 of ``template_source``)."""

    name: PromptName
    template_hash: Annotated[str, Field(pattern=r"^[0-9a-fA-F]{64}$")] | None = None
    description: Annotated[Text, Field(max_length=10_000)] | None = None
    metadata: JsonObject = Field(default_factory=dict)


class RegisterCodeRequest(StrictModel):
    prompts: Annotated[list[CodePromptIn], Field(min_length=1, max_length=500)]

    @field_validator("prompts")
    @classmethod
    def _unique_names(cls, items: list[CodePromptIn]) -> list[CodePromptIn]:
        seen: set[str] = set()
        for item in items:
            if item.name in seen:
                raise ValueError(f"name '{item.name}' appears more than once in the batch")
            seen.add(item.name)
        return items


class RegistrationOut(BaseModel):
    name: str
    version_number: int
    checksum: str
    change: Change
    previous_version_number: int | None


class RegisterCodeResponse(BaseModel):
    results: list[RegistrationOut]


class ConvertRequest(StrictModel):
    to: PromptMode


class HistoryVersion(BaseModel):
    version_number: int
    checksum: str
    template_hash: str
    status: VersionStatus
    created_at: datetime
    execution_count: int
    last_executed_at: datetime | None


class HistoryOut(BaseModel):
    name: str
    mode: PromptMode
    versions: list[HistoryVersion]


class StatsOut(BaseModel):
    executions: int
    succeeded: int
    failed: int
    avg_latency_ms: float | None
    p95_latency_ms: int | None
    prompt_tokens: int
    response_tokens: int
    cost_usd: float = Field(description="USD: the sum of the known costs (0 when none)")


class GroupModelOut(BaseModel):
    provider: ProviderName
    name: str


class GroupStatsOut(StatsOut):
    """One part of a prompt's row under ``group_by``: the field named by ``group_by`` says
    which (``version``: the version number; ``model``: provider and name; ``label``: the label
    the runs named, null for the runs that named none); the others are null."""

    version: int | None = None
    model: GroupModelOut | None = None
    label: str | None = None


class PromptStatsOut(StatsOut):
    name: str
    mode: PromptMode
    groups: list[GroupStatsOut] | None = Field(
        default=None,
        description="with group_by: this prompt's executions per version, model or label",
    )


class AnalyticsOut(BaseModel):
    mode: str
    total_executions: int
    prompts_by_mode: dict[str, int]
    by_mode: dict[str, StatsOut]
    prompts: list[PromptStatsOut]


def stats_fields(stats: Stats) -> dict[str, Any]:
    """The public numbers of an analytics block."""
    return {
        "executions": stats.executions,
        "succeeded": stats.succeeded,
        "failed": stats.failed,
        "avg_latency_ms": stats.avg_latency_ms,
        "p95_latency_ms": stats.p95_latency_ms,
        "prompt_tokens": stats.prompt_tokens,
        "response_tokens": stats.response_tokens,
        "cost_usd": float(stats.cost_usd),
    }
