"""Tracking (code-first) mode: batch registration from application code, mode conversion,
and per-version history. Versioning itself stays in ``services.prompts``."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db import repositories as repo
from prompt_ledger.db.tables import EventType, Prompt, PromptMode, PromptVersion, utcnow
from prompt_ledger.errors import ModeMismatch, ValidationFailed
from prompt_ledger.services import prompts


class Change(enum.StrEnum):
    CREATED = "created"  # a new prompt
    NEW_VERSION = "new_version"  # new text: a new version, now active
    UNCHANGED = "unchanged"  # the text is the active version's
    REACTIVATED = "reactivated"  # the text is an older version's, active again


@dataclass(frozen=True, slots=True)
class CodePrompt:
    name: str
    content: prompts.VersionContent | str  # a str is a plain text version
    template_hash: str | None = None
    description: str | None = None
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Registration:
    name: str
    version_number: int
    checksum: str
    change: Change
    previous_version_number: int | None


async def register_code(session: AsyncSession, items: Sequence[CodePrompt]) -> list[Registration]:
    """Register a batch of code prompts, all or nothing (the caller's transaction).

    Raises:
        ValidationFailed: a ``template_hash`` is not the checksum of its content (for plain
            text, the sha256 of the text), or a variables_schema is invalid.
        ModeMismatch: a name belongs to a full-mode prompt.
        InvalidTemplate: a text is not valid Jinja2.
    """
    for item in items:
        expected = prompts.checksum_of(item.content)
        if item.template_hash is not None and item.template_hash.lower() != expected:
            raise ValidationFailed(
                f"template_hash of '{item.name}' is not the checksum of its content "
                "(for a text prompt without config or variables_schema: the sha256 of "
                "template_source)",
                details={"name": item.name, "expected": expected},
            )
    results: dict[str, Registration] = {}
    # Name order: two batches sharing prompts lock them in the same order (no deadlock).
    for item in sorted(items, key=lambda i: i.name):
        saved = await prompts.save_version(
            session,
            item.name,
            item.content,
            mode=PromptMode.TRACKING,
            description=item.description,
            metadata=item.metadata,
        )
        number = saved.version.version_number
        if saved.prompt_created:
            change = Change.CREATED
        elif saved.created:
            change = Change.NEW_VERSION
        elif saved.previous_active == number:
            change = Change.UNCHANGED
        else:
            change = Change.REACTIVATED
        results[item.name] = Registration(
            item.name, number, saved.version.checksum, change, saved.previous_active
        )
    return [results[item.name] for item in items]


async def convert(session: AsyncSession, name: str, to: PromptMode) -> Prompt:
    """Hand a prompt to the other owner; versions and executions stay as they are."""
    prompt = await repo.lock_prompt(session, name)
    if prompt is None:
        raise prompts.prompt_not_found(name)
    if prompt.mode != to:
        repo.add_event(
            session,
            prompt.id,
            EventType.MODE_CONVERTED,
            details={"from": prompt.mode.value, "to": to.value},
        )
        prompt.mode = to
        prompt.updated_at = utcnow()
    return prompt


@dataclass(frozen=True, slots=True)
class VersionHistory:
    version: PromptVersion
    execution_count: int
    last_executed_at: datetime | None


async def history(
    session: AsyncSession, name: str, *, mode: PromptMode | None
) -> tuple[Prompt, list[VersionHistory]]:
    """Every version, newest first, with how often and how lately it ran."""
    prompt = await prompts.get_prompt(session, name)
    if mode is not None and mode != prompt.mode:
        raise ModeMismatch(
            f"prompt '{name}' is in {prompt.mode} mode, not {mode}; "
            f"ask GET /v1/prompts/{name}/history?mode={prompt.mode}",
            details={"prompt_mode": prompt.mode.value},
        )
    rows = await repo.version_execution_stats(session, prompt.id)
    return prompt, [VersionHistory(v, n, last) for v, n, last in rows]
