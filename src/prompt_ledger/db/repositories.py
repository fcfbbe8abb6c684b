"""SQL, and nothing else: no commits, no HTTP, no business rules.

Functions are named as sentences about the rows they touch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db.tables import (
    EventType,
    Prompt,
    PromptEvent,
    PromptMode,
    PromptVersion,
    utcnow,
)


def _insert(session: AsyncSession, table: type[Any]) -> Any:
    """A dialect-specific INSERT, so ``on_conflict_do_nothing`` is available on both backends."""
    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)


async def get_prompt(session: AsyncSession, name: str) -> Prompt | None:
    return await session.scalar(sa.select(Prompt).where(Prompt.name == name))


async def lock_prompt(session: AsyncSession, name: str) -> Prompt | None:
    """The prompt row, locked until the transaction ends (PostgreSQL; a no-op on SQLite)."""
    return await session.scalar(
        sa.select(Prompt)
        .where(Prompt.name == name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


async def lock_or_create_prompt(
    session: AsyncSession, name: str, *, mode: PromptMode, description: str | None
) -> tuple[Prompt, bool]:
    """Return the prompt row locked for this transaction, creating it if absent.

    ``ON CONFLICT DO NOTHING`` settles concurrent creators (the loser waits for the
    winner's commit), and ``FOR UPDATE`` then serialises every writer of one prompt, so
    version numbers and checksum reuse are decided one writer at a time. SQLite needs
    neither: ``BEGIN IMMEDIATE`` already admits one writer.
    """
    now = utcnow()
    inserted_id = await session.scalar(
        _insert(session, Prompt)
        .values(name=name, mode=mode, description=description, created_at=now, updated_at=now)
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Prompt.id)
    )
    prompt = await lock_prompt(session, name)
    assert prompt is not None  # inserted above or already there; prompts are never deleted
    return prompt, inserted_id is not None


async def get_version(session: AsyncSession, prompt_id: int, number: int) -> PromptVersion | None:
    return await session.scalar(
        sa.select(PromptVersion).where(
            PromptVersion.prompt_id == prompt_id, PromptVersion.version_number == number
        )
    )


async def get_version_by_id(session: AsyncSession, version_id: int) -> PromptVersion | None:
    return await session.get(PromptVersion, version_id)


async def get_version_by_checksum(
    session: AsyncSession, prompt_id: int, checksum: str
) -> PromptVersion | None:
    return await session.scalar(
        sa.select(PromptVersion).where(
            PromptVersion.prompt_id == prompt_id, PromptVersion.checksum == checksum
        )
    )


async def get_max_version_number(session: AsyncSession, prompt_id: int) -> int:
    current = await session.scalar(
        sa.select(sa.func.max(PromptVersion.version_number)).where(
            PromptVersion.prompt_id == prompt_id
        )
    )
    return current or 0


async def list_versions(session: AsyncSession, prompt_id: int) -> Sequence[PromptVersion]:
    result = await session.scalars(
        sa.select(PromptVersion)
        .where(PromptVersion.prompt_id == prompt_id)
        .order_by(PromptVersion.version_number.desc())
    )
    return result.all()


async def list_prompts_with_active_version(
    session: AsyncSession, *, mode: PromptMode | None, after_name: str | None, limit: int
) -> Sequence[tuple[Prompt, PromptVersion | None]]:
    """Prompts ordered by name (a stable keyset for cursors), each with its active version."""
    query = (
        sa.select(Prompt, PromptVersion)
        .outerjoin(PromptVersion, PromptVersion.id == Prompt.active_version_id)
        .order_by(Prompt.name)
        .limit(limit)
    )
    if mode is not None:
        query = query.where(Prompt.mode == mode)
    if after_name is not None:
        query = query.where(Prompt.name > after_name)
    rows = await session.execute(query)
    return [(prompt, version) for prompt, version in rows]


def add_event(
    session: AsyncSession,
    prompt_id: int,
    event_type: EventType,
    *,
    version_number: int | None = None,
    previous_version_number: int | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    session.add(
        PromptEvent(
            prompt_id=prompt_id,
            type=event_type,
            version_number=version_number,
            previous_version_number=previous_version_number,
            details=details or {},
            created_at=utcnow(),
        )
    )


async def list_events(session: AsyncSession, prompt_id: int) -> Sequence[PromptEvent]:
    result = await session.scalars(
        sa.select(PromptEvent).where(PromptEvent.prompt_id == prompt_id).order_by(PromptEvent.id)
    )
    return result.all()
