"""SQL, and nothing else: no commits, no HTTP, no business rules.

Functions are named as sentences about the rows they touch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db.statements import ROLLUP_COUNTERS
from prompt_ledger.db.tables import (
    EXECUTION_TOTAL_COUNTERS,
    FINAL_STATUSES,
    EventType,
    Execution,
    ExecutionMode,
    ExecutionRollup,
    ExecutionStatus,
    LatencyRollup,
    LatencyTotal,
    Model,
    Prompt,
    PromptEvent,
    PromptLabel,
    PromptMode,
    PromptVersion,
    ProviderName,
    execution_totals,
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
    session: AsyncSession,
    *,
    mode: PromptMode | None,
    after_name: str | None,
    limit: int,
    name_contains: str | None = None,
) -> Sequence[tuple[Prompt, PromptVersion | None]]:
    """Prompts ordered by name (a stable keyset for cursors), each with its active version.

    ``name_contains`` matches case-insensitively (names are ASCII); ``%`` and ``_`` in it
    are literal.
    """
    query = (
        sa.select(Prompt, PromptVersion)
        .outerjoin(PromptVersion, PromptVersion.id == Prompt.active_version_id)
        .order_by(Prompt.name)
        .limit(limit)
    )
    if mode is not None:
        query = query.where(Prompt.mode == mode)
    if name_contains:
        query = query.where(
            sa.func.lower(Prompt.name).contains(name_contains.lower(), autoescape=True)
        )
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


async def get_last_event_time(
    session: AsyncSession, prompt_id: int, event_type: EventType
) -> datetime | None:
    return _utc(
        await session.scalar(
            sa.select(sa.func.max(PromptEvent.created_at)).where(
                PromptEvent.prompt_id == prompt_id, PromptEvent.type == event_type
            )
        )
    )


async def get_version_numbers(
    session: AsyncSession, prompt_id: int, numbers: Sequence[int]
) -> set[int]:
    """Which of ``numbers`` are versions of ``prompt_id``."""
    result = await session.scalars(
        sa.select(PromptVersion.version_number).where(
            PromptVersion.prompt_id == prompt_id, PromptVersion.version_number.in_(numbers)
        )
    )
    return set(result.all())


async def get_label(session: AsyncSession, prompt_id: int, label: str) -> PromptLabel | None:
    return await session.scalar(
        sa.select(PromptLabel)
        .where(PromptLabel.prompt_id == prompt_id, PromptLabel.label == label)
        .execution_options(populate_existing=True)
    )


async def list_labels(session: AsyncSession, prompt_id: int) -> Sequence[PromptLabel]:
    result = await session.scalars(
        sa.select(PromptLabel).where(PromptLabel.prompt_id == prompt_id).order_by(PromptLabel.label)
    )
    return result.all()


# --- executions (the ledger's transitions and hot reads are in ``db.ledger``) ------------


async def list_executions(
    session: AsyncSession,
    *,
    prompt_name: str | None,
    status: ExecutionStatus | None,
    execution_mode: ExecutionMode | None,
    prompt_mode: PromptMode | None,
    since: datetime | None,
    until: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> Sequence[tuple[Execution, Prompt, PromptVersion, Model]]:
    """Newest first; ``before`` is the keyset cursor (created_at, id) of the previous page."""
    query = (
        sa.select(Execution, Prompt, PromptVersion, Model)
        .join(Prompt, Prompt.id == Execution.prompt_id)
        .join(PromptVersion, PromptVersion.id == Execution.prompt_version_id)
        .join(Model, Model.id == Execution.model_id)
        .order_by(Execution.created_at.desc(), Execution.id.desc())
        .limit(limit)
    )
    if prompt_name is not None:
        query = query.where(Prompt.name == prompt_name)
    if status is not None:
        query = query.where(Execution.status == status)
    if execution_mode is not None:
        query = query.where(Execution.execution_mode == execution_mode)
    if prompt_mode is not None:
        query = query.where(Prompt.mode == prompt_mode)
    if since is not None:
        query = query.where(Execution.created_at >= since)
    if until is not None:
        query = query.where(Execution.created_at < until)
    if before is not None:
        created_at, execution_id = before
        query = query.where(
            sa.or_(
                Execution.created_at < created_at,
                sa.and_(Execution.created_at == created_at, Execution.id < execution_id),
            )
        )
    rows = await session.execute(query)
    return [(e, p, v, m) for e, p, v, m in rows]


# --- rollups and analytics ----------------------------------------------------------------


def _hour_window(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


async def sum_rollups(
    session: AsyncSession, *, start: datetime | None, end: datetime | None
) -> Sequence[tuple[int, tuple[int, ...], Decimal]]:
    """Per prompt: the rollup counters and the cost summed over whole hours in [start, end)."""
    r = ExecutionRollup
    query = (
        sa.select(
            r.prompt_id,
            sa.func.sum(r.cost_usd),
            *(sa.func.sum(getattr(r, name)) for name in ROLLUP_COUNTERS),
        )
        .where(*_hour_window(r.hour, start, end))
        .group_by(r.prompt_id)
    )
    rows = await session.execute(query)
    return [(row[0], tuple(int(v or 0) for v in row[2:]), _decimal(row[1])) for row in rows]


async def sum_latency_rollups(
    session: AsyncSession, *, start: datetime | None, end: datetime | None
) -> Sequence[tuple[int, int, int]]:
    """(prompt_id, bucket, count) over whole hours in [start, end); all time when open."""
    if start is None and end is None:
        totals = sa.select(LatencyTotal.prompt_id, LatencyTotal.bucket, LatencyTotal.count)
        return [(p, b, int(c)) for p, b, c in await session.execute(totals)]
    r = LatencyRollup
    query = (
        sa.select(r.prompt_id, r.bucket, sa.func.sum(r.count))
        .where(*_hour_window(r.hour, start, end))
        .group_by(r.prompt_id, r.bucket)
    )
    return [(p, b, int(c)) for p, b, c in await session.execute(query)]


EXECUTION_GROUPS: dict[str, Any] = {
    "version": Execution.prompt_version_id,
    "model": Execution.model_id,
    "label": Execution.label,
}
"""The ledger columns analytics can break a prompt's executions down by (``group_by``)."""


def _grouping(group_by: str | None) -> list[Any]:
    return [Execution.prompt_id] + ([EXECUTION_GROUPS[group_by]] if group_by else [])


GroupKey = tuple[Any, ...]
"""(prompt_id,) or, with ``group_by``, (prompt_id, the group column's value)."""


async def sum_finished_between(
    session: AsyncSession,
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str | None = None,
) -> Sequence[tuple[GroupKey, tuple[int, ...], Decimal]]:
    """The rollup counters and cost computed from the ledger itself (a partial hour, or a
    ``group_by`` breakdown, which the rollups do not keep), per prompt (and group)."""
    e = Execution
    latency_known = e.latency_ms.is_not(None)
    keys = _grouping(group_by)
    query = (
        sa.select(
            *keys,
            sa.func.sum(e.cost_usd),
            sa.func.count(),
            sa.func.count().filter(e.status == ExecutionStatus.SUCCEEDED),
            sa.func.count().filter(e.status == ExecutionStatus.FAILED),
            sa.func.count().filter(latency_known),
            sa.func.coalesce(sa.func.sum(e.latency_ms), 0),
            sa.func.coalesce(sa.func.sum(e.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(e.response_tokens), 0),
        )
        .where(e.status.in_(FINAL_STATUSES), *_hour_window(e.created_at, start, end))
        .group_by(*keys)
    )
    n = len(keys)
    rows = await session.execute(query)
    return [
        (tuple(row[:n]), tuple(int(v or 0) for v in row[n + 1 :]), _decimal(row[n])) for row in rows
    ]


async def latencies_between(
    session: AsyncSession,
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str | None = None,
) -> Sequence[tuple[GroupKey, int, int]]:
    """(key, latency_ms, count) of finished executions in [start, end)."""
    e = Execution
    keys = _grouping(group_by)
    query = (
        sa.select(*keys, e.latency_ms, sa.func.count())
        .where(
            e.status.in_(FINAL_STATUSES),
            e.latency_ms.is_not(None),
            *_hour_window(e.created_at, start, end),
        )
        .group_by(*keys, e.latency_ms)
    )
    n = len(keys)
    return [(tuple(row[:n]), row[n] or 0, int(row[n + 1])) for row in await session.execute(query)]


async def count_unfinished(
    session: AsyncSession,
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: str | None = None,
) -> dict[GroupKey, int]:
    """Per prompt (and group): queued and running executions (not yet in the rollups)."""
    e = Execution
    keys = _grouping(group_by)
    query = (
        sa.select(*keys, sa.func.count())
        .where(
            e.status.in_((ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)),
            *_hour_window(e.created_at, start, end),
        )
        .group_by(*keys)
    )
    n = len(keys)
    return {tuple(row[:n]): int(row[n]) for row in await session.execute(query)}


def _decimal(value: Any) -> Decimal:
    """A SUM of the cost column: aggregates bypass the column type (SQLite: a float)."""
    if value is None:
        return Decimal(0)
    return (value if isinstance(value, Decimal) else Decimal(str(value))).quantize(_COST_QUANTUM)


_COST_QUANTUM = Decimal("1e-12")  # the cost columns' scale


async def get_versions_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, PromptVersion]:
    if not ids:
        return {}
    versions = await session.scalars(sa.select(PromptVersion).where(PromptVersion.id.in_(ids)))
    return {v.id: v for v in versions}


async def get_models_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Model]:
    if not ids:
        return {}
    models = await session.scalars(sa.select(Model).where(Model.id.in_(ids)))
    return {m.id: m for m in models}


async def get_prompts_by_id(session: AsyncSession, ids: Sequence[int]) -> dict[int, Prompt]:
    if not ids:
        return {}
    prompts = await session.scalars(sa.select(Prompt).where(Prompt.id.in_(ids)))
    return {p.id: p for p in prompts}


async def count_prompts_by_mode(session: AsyncSession) -> dict[PromptMode, int]:
    rows = await session.execute(sa.select(Prompt.mode, sa.func.count()).group_by(Prompt.mode))
    return {mode: int(count) for mode, count in rows}


async def version_execution_stats(
    session: AsyncSession, prompt_id: int
) -> Sequence[tuple[PromptVersion, int, datetime | None]]:
    """Each version of a prompt, newest first, with its execution count and latest time."""
    stats = (
        sa.select(
            Execution.prompt_version_id.label("version_id"),
            sa.func.count().label("n"),
            sa.func.max(Execution.created_at).label("last"),
        )
        .where(Execution.prompt_id == prompt_id)
        .group_by(Execution.prompt_version_id)
        .subquery()
    )
    query = (
        sa.select(PromptVersion, stats.c.n, stats.c.last)
        .outerjoin(stats, stats.c.version_id == PromptVersion.id)
        .where(PromptVersion.prompt_id == prompt_id)
        .order_by(PromptVersion.version_number.desc())
    )
    rows = await session.execute(query)
    return [(v, int(n or 0), _utc(last)) for v, n, last in rows]


async def sum_rollups_by_hour(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    prompt_ids: Sequence[int] | None,
) -> Sequence[tuple[datetime, tuple[int, ...], Decimal]]:
    """Per UTC hour in [start, end): the rollup counters and the cost summed over the given
    prompts (all if None)."""
    r = ExecutionRollup
    query = (
        sa.select(
            r.hour,
            sa.func.sum(r.cost_usd),
            *(sa.func.sum(getattr(r, name)) for name in ROLLUP_COUNTERS),
        )
        .where(*_hour_window(r.hour, start, end))
        .group_by(r.hour)
        .order_by(r.hour)
    )
    if prompt_ids is not None:
        query = query.where(r.prompt_id.in_(prompt_ids))
    rows = await session.execute(query)
    return [
        (_utc_hour(row[0]), tuple(int(v or 0) for v in row[2:]), _decimal(row[1])) for row in rows
    ]


async def sum_latency_rollups_by_hour(
    session: AsyncSession,
    *,
    start: datetime,
    end: datetime,
    prompt_ids: Sequence[int] | None,
) -> Sequence[tuple[datetime, int, int]]:
    """(hour, bucket, count) over [start, end) for the given prompts (all if None)."""
    r = LatencyRollup
    query = (
        sa.select(r.hour, r.bucket, sa.func.sum(r.count))
        .where(*_hour_window(r.hour, start, end))
        .group_by(r.hour, r.bucket)
    )
    if prompt_ids is not None:
        query = query.where(r.prompt_id.in_(prompt_ids))
    return [(_utc_hour(h), b, int(c)) for h, b, c in await session.execute(query)]


async def sum_rollups_of_prompts(
    session: AsyncSession, *, prompt_ids: Sequence[int], start: datetime
) -> Sequence[tuple[int, tuple[int, ...]]]:
    """Per prompt (of ``prompt_ids``): the rollup counters of every hour from ``start`` on."""
    if not prompt_ids:
        return []
    r = ExecutionRollup
    query = (
        sa.select(r.prompt_id, *(sa.func.sum(getattr(r, name)) for name in ROLLUP_COUNTERS))
        .where(r.hour >= start, r.prompt_id.in_(prompt_ids))
        .group_by(r.prompt_id)
    )
    rows = await session.execute(query)
    return [(row[0], tuple(int(v or 0) for v in row[1:])) for row in rows]


async def last_execution_times(
    session: AsyncSession, prompt_ids: Sequence[int]
) -> dict[int, datetime]:
    """When each prompt last ran: one index seek on (prompt_id, created_at) per prompt."""
    if not prompt_ids:
        return {}
    last = (
        sa.select(sa.func.max(Execution.created_at))
        .where(Execution.prompt_id == Prompt.id)
        .scalar_subquery()
    )
    rows = await session.execute(sa.select(Prompt.id, last).where(Prompt.id.in_(prompt_ids)))
    found = {prompt_id: _utc(moment) for prompt_id, moment in rows}
    return {prompt_id: moment for prompt_id, moment in found.items() if moment is not None}


def _utc_hour(moment: Any) -> datetime:
    value = _utc(moment)
    assert value is not None  # a group-by key of a NOT NULL column
    return value


def _utc(moment: Any) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back text, PostgreSQL aware datetimes."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    value: datetime = moment
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- all-time totals and /metrics ---------------------------------------------------------


async def sum_execution_totals_by_labels(
    session: AsyncSession,
) -> Sequence[tuple[PromptMode, ProviderName, str, ExecutionMode, ExecutionStatus, dict[str, int]]]:
    """All-time totals of finished executions per prompt mode, model, execution mode and
    status (the prompt's current mode), every counter summed over prompts."""
    t = execution_totals
    labels = (Prompt.mode, Model.provider, Model.model_name, t.c.execution_mode, t.c.status)
    query = (
        sa.select(*labels, *(sa.func.sum(t.c[name]) for name in EXECUTION_TOTAL_COUNTERS))
        .select_from(t)
        .join(Prompt, Prompt.id == t.c.prompt_id)
        .join(Model, Model.id == t.c.model_id)
        .group_by(*labels)
    )
    rows = await session.execute(query)
    return [
        (
            PromptMode(row[0]),
            ProviderName(row[1]),
            row[2],
            ExecutionMode(row[3]),
            ExecutionStatus(row[4]),
            {name: int(v or 0) for name, v in zip(EXECUTION_TOTAL_COUNTERS, row[5:], strict=True)},
        )
        for row in rows
    ]


async def sum_latency_totals_by_prompt_mode(
    session: AsyncSession,
) -> Sequence[tuple[PromptMode, int, int]]:
    """(prompt mode, latency bucket, count) over all time, from ``latency_totals``."""
    query = (
        sa.select(Prompt.mode, LatencyTotal.bucket, sa.func.sum(LatencyTotal.count))
        .join(Prompt, Prompt.id == LatencyTotal.prompt_id)
        .group_by(Prompt.mode, LatencyTotal.bucket)
    )
    return [(PromptMode(m), int(b), int(c)) for m, b, c in await session.execute(query)]


async def count_unfinished_by_labels(
    session: AsyncSession,
) -> Sequence[tuple[PromptMode, ProviderName, str, ExecutionMode, ExecutionStatus, int]]:
    """Queued and running executions per prompt mode, model, execution mode and status
    (a range of the status index: as many rows as are unfinished)."""
    e = Execution
    labels = (Prompt.mode, Model.provider, Model.model_name, e.execution_mode, e.status)
    query = (
        sa.select(*labels, sa.func.count())
        .select_from(e)
        .join(Prompt, Prompt.id == e.prompt_id)
        .join(Model, Model.id == e.model_id)
        .where(e.status.in_((ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)))
        .group_by(*labels)
    )
    return [
        (PromptMode(m), ProviderName(p), name, ExecutionMode(x), ExecutionStatus(s), int(c))
        for m, p, name, x, s, c in await session.execute(query)
    ]


async def get_queue_summary(
    session: AsyncSession, *, now: datetime
) -> tuple[int, int, datetime | None]:
    """Queued rows: how many, how many are due now, and since when the longest-waiting due
    one has been due (its ``not_before`` after a retry back-off, else its ``created_at``)."""
    e = Execution
    due = sa.or_(e.not_before.is_(None), e.not_before <= now)
    query = sa.select(
        sa.func.count(),
        sa.func.count().filter(due),
        sa.func.min(sa.func.coalesce(e.not_before, e.created_at)).filter(due),
    ).where(e.status == ExecutionStatus.QUEUED)
    total, due_count, oldest = (await session.execute(query)).one()
    return int(total), int(due_count), _utc(oldest)


# --- models -------------------------------------------------------------------------------


async def list_models(session: AsyncSession) -> Sequence[Model]:
    query = sa.select(Model).order_by(Model.provider, Model.model_name)
    return list(await session.scalars(query))


async def lock_or_create_model(
    session: AsyncSession, provider: ProviderName, model_name: str, *, defaults: dict[str, Any]
) -> tuple[Model, bool]:
    """The model row locked for this transaction, created with ``defaults`` if absent
    (concurrent creators settled by the unique key, as ``lock_or_create_prompt`` does)."""
    inserted_id = await session.scalar(
        _insert(session, Model)
        .values(provider=provider, model_name=model_name, **defaults)
        .on_conflict_do_nothing(index_elements=["provider", "model_name"])
        .returning(Model.id)
    )
    model = await session.scalar(
        sa.select(Model)
        .where(Model.provider == provider, Model.model_name == model_name)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    assert model is not None  # inserted above or already there; models are never deleted
    return model, inserted_id is not None
