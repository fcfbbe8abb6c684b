"""SQL, and nothing else: no commits, no HTTP, no business rules.

Functions are named as sentences about the rows they touch.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db import direct
from prompt_ledger.db.tables import (
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
    PromptMode,
    PromptVersion,
    ProviderName,
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


# --- models -----------------------------------------------------------------------------


async def get_active_model(
    session: AsyncSession, provider: ProviderName, model_name: str
) -> Model | None:
    return await session.scalar(
        sa.select(Model).where(
            Model.provider == provider, Model.model_name == model_name, Model.is_active
        )
    )


# --- executions -------------------------------------------------------------------------


async def insert_execution_unless_key_taken(session: AsyncSession, values: dict[str, Any]) -> bool:
    """Insert the row; False when another request already holds its idempotency key.

    ``ON CONFLICT DO NOTHING`` waits for a concurrent holder of the key to commit, so the
    caller can read the winner's row right after (PostgreSQL, READ COMMITTED). Needs a
    hot-path session (``Runtime.autocommit_sessions``: see ``db.direct``).
    """
    dialect = session.get_bind().dialect.name
    statement = _INSERT_EXECUTION.get(dialect)
    if statement is None:  # built once: a Core INSERT whose values come as parameters
        table = cast(sa.Table, Execution.__table__)
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        statement = _INSERT_EXECUTION[dialect] = (
            insert(table)
            .values({c.name: sa.bindparam(c.name, type_=c.type) for c in table.c})
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(table.c.id)
        )
    params = {_EXECUTION_COLUMNS[k]: v for k, v in values.items()}
    return await direct.fetchval(session, statement, params) is not None


_INSERT_EXECUTION: dict[str, Any] = {}


async def get_execution(session: AsyncSession, execution_id: uuid.UUID) -> Execution | None:
    return await session.get(Execution, execution_id, populate_existing=True)


async def get_execution_by_key(session: AsyncSession, key: str) -> Execution | None:
    return await session.scalar(
        sa.select(Execution)
        .where(Execution.idempotency_key == key)
        .execution_options(populate_existing=True)
    )


async def get_execution_context(
    session: AsyncSession, execution: Execution
) -> tuple[Prompt, PromptVersion, Model]:
    """The prompt, version and model an execution refers to (for its API view)."""
    row = (
        await session.execute(
            sa.select(Prompt, PromptVersion, Model)
            .select_from(Prompt)
            .join(PromptVersion, PromptVersion.id == execution.prompt_version_id)
            .join(Model, Model.id == execution.model_id)
            .where(Prompt.id == execution.prompt_id)
        )
    ).one()
    return row[0], row[1], row[2]


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


async def claim_queued(
    session: AsyncSession, execution_id: uuid.UUID, *, now: datetime
) -> Execution | None:
    """``queued`` → ``running`` if still queued and due; None when someone else has it."""
    result = await session.scalars(
        sa.update(Execution)
        .where(
            Execution.id == execution_id,
            Execution.status == ExecutionStatus.QUEUED,
            sa.or_(Execution.not_before.is_(None), Execution.not_before <= now),
        )
        .values(status=ExecutionStatus.RUNNING, started_at=now, attempts=Execution.attempts + 1)
        .returning(Execution),
        execution_options={"synchronize_session": False},
    )
    return result.one_or_none()


async def update_running_execution(
    session: AsyncSession, execution_id: uuid.UUID, *, attempt: int, values: dict[str, Any]
) -> Execution | None:
    """Write an attempt's outcome, only if that attempt still owns the row.

    The ``attempts`` guard stops a worker that was presumed dead (and whose row was
    recovered and re-run) from overwriting the newer attempt's result.
    """
    result = await session.scalars(
        sa.update(Execution)
        .where(
            Execution.id == execution_id,
            Execution.status == ExecutionStatus.RUNNING,
            Execution.attempts == attempt,
        )
        .values(**values)
        .returning(Execution),
        execution_options={"synchronize_session": False, "populate_existing": True},
    )
    return result.one_or_none()


async def cancel_queued(
    session: AsyncSession, execution_id: uuid.UUID, *, now: datetime
) -> Execution | None:
    result = await session.scalars(
        sa.update(Execution)
        .where(Execution.id == execution_id, Execution.status == ExecutionStatus.QUEUED)
        .values(
            status=ExecutionStatus.CANCELED,
            error_type="canceled",
            error_message="canceled before it ran",
            completed_at=now,
        )
        .returning(Execution),
        execution_options={"synchronize_session": False, "populate_existing": True},
    )
    return result.one_or_none()


async def find_stale_running(
    session: AsyncSession, *, started_before: datetime, limit: int
) -> Sequence[Execution]:
    query = (
        sa.select(Execution)
        .where(Execution.status == ExecutionStatus.RUNNING, Execution.started_at < started_before)
        .order_by(Execution.started_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.scalars(query)).all()


async def mark_undispatched_queued(
    session: AsyncSession, *, now: datetime, published_before: datetime, limit: int
) -> list[uuid.UUID]:
    """Queued rows that are due but whose last publication is old: stamp and return them."""
    due = (
        sa.select(Execution.id)
        .where(
            Execution.status == ExecutionStatus.QUEUED,
            sa.or_(Execution.dispatched_at.is_(None), Execution.dispatched_at < published_before),
            sa.or_(Execution.not_before.is_(None), Execution.not_before <= now),
        )
        .order_by(Execution.created_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    ids = list((await session.scalars(due)).all())
    if ids:
        await session.execute(
            sa.update(Execution).where(Execution.id.in_(ids)).values(dispatched_at=now),
            execution_options={"synchronize_session": False},
        )
    return ids


# --- rollups and analytics ----------------------------------------------------------------

TERMINAL = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELED)
_ROLLUP_COUNTERS = (
    "executions",
    "succeeded",
    "failed",
    "latency_count",
    "latency_sum",
    "prompt_tokens",
    "response_tokens",
)


async def add_to_rollups(
    session: AsyncSession,
    *,
    prompt_id: int,
    hour: datetime,
    counters: dict[str, int],
    latency_bucket: int | None,
) -> None:
    """Add one finished execution to its prompt's hourly totals (upserts, both backends)."""
    totals = _insert(session, ExecutionRollup).values(prompt_id=prompt_id, hour=hour, **counters)
    table = ExecutionRollup.__table__
    await session.execute(
        totals.on_conflict_do_update(
            index_elements=["prompt_id", "hour"],
            set_={name: table.c[name] + totals.excluded[name] for name in _ROLLUP_COUNTERS},
        )
    )
    if latency_bucket is not None:
        hourly = _insert(session, LatencyRollup).values(
            prompt_id=prompt_id, hour=hour, bucket=latency_bucket, count=1
        )
        await session.execute(
            hourly.on_conflict_do_update(
                index_elements=["prompt_id", "hour", "bucket"],
                set_={"count": LatencyRollup.__table__.c.count + 1},
            )
        )
        total = _insert(session, LatencyTotal).values(
            prompt_id=prompt_id, bucket=latency_bucket, count=1
        )
        await session.execute(
            total.on_conflict_do_update(
                index_elements=["prompt_id", "bucket"],
                set_={"count": LatencyTotal.__table__.c.count + 1},
            )
        )


def _hour_window(column: Any, start: datetime | None, end: datetime | None) -> list[Any]:
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


async def sum_rollups(
    session: AsyncSession, *, start: datetime | None, end: datetime | None
) -> Sequence[tuple[int, tuple[int, ...]]]:
    """Per prompt: the rollup counters summed over whole hours in [start, end)."""
    r = ExecutionRollup
    query = (
        sa.select(r.prompt_id, *(sa.func.sum(getattr(r, name)) for name in _ROLLUP_COUNTERS))
        .where(*_hour_window(r.hour, start, end))
        .group_by(r.prompt_id)
    )
    rows = await session.execute(query)
    return [(row[0], tuple(int(v or 0) for v in row[1:])) for row in rows]


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


async def sum_finished_between(
    session: AsyncSession, *, start: datetime, end: datetime
) -> Sequence[tuple[int, tuple[int, ...]]]:
    """The rollup counters computed from the ledger itself, for a partial hour."""
    e = Execution
    latency_known = e.latency_ms.is_not(None)
    query = (
        sa.select(
            e.prompt_id,
            sa.func.count(),
            sa.func.count().filter(e.status == ExecutionStatus.SUCCEEDED),
            sa.func.count().filter(e.status == ExecutionStatus.FAILED),
            sa.func.count().filter(latency_known),
            sa.func.coalesce(sa.func.sum(e.latency_ms), 0),
            sa.func.coalesce(sa.func.sum(e.prompt_tokens), 0),
            sa.func.coalesce(sa.func.sum(e.response_tokens), 0),
        )
        .where(e.status.in_(TERMINAL), e.created_at >= start, e.created_at < end)
        .group_by(e.prompt_id)
    )
    rows = await session.execute(query)
    return [(row[0], tuple(int(v or 0) for v in row[1:])) for row in rows]


async def latencies_between(
    session: AsyncSession, *, start: datetime, end: datetime
) -> Sequence[tuple[int, int, int]]:
    """(prompt_id, latency_ms, count) of finished executions in a partial hour."""
    e = Execution
    query = (
        sa.select(e.prompt_id, e.latency_ms, sa.func.count())
        .where(
            e.status.in_(TERMINAL),
            e.latency_ms.is_not(None),
            e.created_at >= start,
            e.created_at < end,
        )
        .group_by(e.prompt_id, e.latency_ms)
    )
    return [(p, ms or 0, int(c)) for p, ms, c in await session.execute(query)]


async def count_unfinished(
    session: AsyncSession, *, start: datetime | None, end: datetime | None
) -> dict[int, int]:
    """Per prompt: queued and running executions (not yet in the rollups)."""
    e = Execution
    query = (
        sa.select(e.prompt_id, sa.func.count())
        .where(
            e.status.in_((ExecutionStatus.QUEUED, ExecutionStatus.RUNNING)),
            *_hour_window(e.created_at, start, end),
        )
        .group_by(e.prompt_id)
    )
    return {p: int(c) for p, c in await session.execute(query)}


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


def _utc(moment: Any) -> datetime | None:
    """Aggregates bypass the column type: SQLite hands back text, PostgreSQL aware datetimes."""
    if moment is None:
        return None
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    value: datetime = moment
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- all-time totals and /metrics ---------------------------------------------------------
# (tables imported inside the functions: this section is appended to a file others edit)


async def add_to_execution_totals(
    session: AsyncSession,
    *,
    prompt_id: int,
    model_id: int,
    execution_mode: ExecutionMode,
    status: ExecutionStatus,
    counters: dict[str, int],
) -> None:
    """Add one finished execution to its all-time totals row (one upsert, both backends)."""
    from prompt_ledger.db.tables import execution_totals

    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    row = insert(execution_totals).values(
        prompt_id=prompt_id,
        model_id=model_id,
        execution_mode=execution_mode,
        status=status,
        **counters,
    )
    await session.execute(
        row.on_conflict_do_update(
            index_elements=["prompt_id", "model_id", "execution_mode", "status"],
            set_={name: execution_totals.c[name] + row.excluded[name] for name in counters},
        )
    )


async def sum_execution_totals_by_labels(
    session: AsyncSession,
) -> Sequence[tuple[PromptMode, ProviderName, str, ExecutionMode, ExecutionStatus, dict[str, int]]]:
    """All-time totals of finished executions per prompt mode, model, execution mode and
    status (the prompt's current mode), every counter summed over prompts."""
    from prompt_ledger.db.tables import EXECUTION_TOTAL_COUNTERS, execution_totals

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


# --- the execution hot path: one round trip per step ------------------------------------
# (appended as its own section: others edit this file too)


def is_postgres(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


async def get_prompt_version_model(
    session: AsyncSession,
    name: str,
    *,
    version_number: int | None,
    provider: ProviderName,
    model_name: str,
) -> tuple[Prompt, PromptVersion | None, Model | None] | None:
    """What an execution needs, in one query: the prompt by name, the version to run (that
    number, else the active one) and the active model named. None when the prompt does not
    exist; a missing version or model is None in its place. Needs a hot-path session."""
    params: dict[str, Any] = {"name": name, "provider": provider, "model_name": model_name}
    if version_number is not None:
        params["version_number"] = version_number
    found = await direct.fetchrow(
        session, _resolve_statement(by_number=version_number is not None), params
    )
    if found is None:
        return None
    return (
        _entity(Prompt, "p_", found),
        _entity(PromptVersion, "v_", found),
        _entity(Model, "m_", found),
    )


_ENTITY_COLUMNS: dict[type[Any], list[tuple[str, str]]] = {
    cls: [(attr.key, attr.columns[0].name) for attr in cls.__mapper__.column_attrs]
    for cls in (Prompt, PromptVersion, Model)
}


def _entity(cls: type[Any], prefix: str, row: dict[str, Any]) -> Any:
    """A (transient) ORM object from the ``prefix``-labelled columns; None for a missing
    outer-joined row."""
    if row[f"{prefix}id"] is None:
        return None
    return cls(**{key: row[prefix + column] for key, column in _ENTITY_COLUMNS[cls]})


_RESOLVE_STATEMENTS: dict[bool, Any] = {}


def _resolve_statement(by_number: bool) -> Any:
    """Prompt, version and model as Core columns labelled ``p_``/``v_``/``m_``, built once
    per variant with bound parameters (building costs more than running)."""
    if (cached := _RESOLVE_STATEMENTS.get(by_number)) is not None:
        return cached
    p = cast(sa.Table, Prompt.__table__)
    v = cast(sa.Table, PromptVersion.__table__)
    m = cast(sa.Table, Model.__table__)
    version_on = (
        sa.and_(v.c.prompt_id == p.c.id, v.c.version_number == sa.bindparam("version_number"))
        if by_number
        else v.c.id == p.c.active_version_id
    )
    model_on = sa.and_(
        m.c.provider == sa.bindparam("provider"),
        m.c.model_name == sa.bindparam("model_name"),
        m.c.is_active,
    )
    columns = [
        column.label(f"{prefix}{column.name}")
        for prefix, table in (("p_", p), ("v_", v), ("m_", m))
        for column in table.c
    ]
    statement = (
        sa.select(*columns)
        .select_from(p.outerjoin(v, version_on).outerjoin(m, model_on))
        .where(p.c.name == sa.bindparam("name"))
    )
    _RESOLVE_STATEMENTS[by_number] = statement
    return statement


@dataclass(frozen=True, slots=True)
class RollupDelta:
    """What one execution reaching a final status adds to the rollup tables."""

    prompt_id: int
    hour: datetime
    counters: dict[str, int]  # execution_rollups (the _ROLLUP_COUNTERS)
    latency_bucket: int | None  # latency_rollups and latency_totals, when it has a latency
    model_id: int
    execution_mode: ExecutionMode
    status: ExecutionStatus
    totals: dict[str, int]  # execution_totals


async def finish_running_execution(
    session: AsyncSession,
    execution_id: uuid.UUID,
    *,
    attempt: int,
    values: dict[str, Any],
    delta: RollupDelta,
) -> bool:
    """Write an attempt's final outcome and add it to every rollup, atomically, if that
    attempt still owns the row (as ``update_running_execution``). True when written.

    PostgreSQL: one statement (data-modifying CTEs; each rollup INSERT selects from the
    UPDATE, so nothing is added when it matched no row). One round trip, and in an autocommit
    session the hot rollup rows (one per prompt and hour, shared by every concurrent finisher
    of that prompt) stay locked for that statement and its commit only, instead of across a
    client round trip per table. SQLite (no data-modifying CTEs): the same statements one
    after the other in the session's transaction. Both are built once, with bound parameters.
    """
    columns = {_EXECUTION_COLUMNS[k]: v for k, v in values.items()}
    shape = _FinishShape(
        tuple(columns), delta.latency_bucket is not None, tuple(delta.counters), tuple(delta.totals)
    )
    hourly = {"prompt_id": delta.prompt_id, "hour": delta.hour}
    params: dict[str, Any] = {"execution_id": execution_id, "attempt": attempt}
    params |= {f"set_{k}": v for k, v in columns.items()}
    params |= _prefixed("rollup", {**hourly, **delta.counters})
    if delta.latency_bucket is not None:
        bucket = {"bucket": delta.latency_bucket, "count": 1}
        params |= _prefixed("latency", {**hourly, **bucket})
        params |= _prefixed("latency_total", {"prompt_id": delta.prompt_id, **bucket})
    params |= _prefixed(
        "totals",
        {
            "prompt_id": delta.prompt_id,
            "model_id": delta.model_id,
            "execution_mode": delta.execution_mode,
            "status": delta.status,
            **delta.totals,
        },
    )
    if is_postgres(session):
        if direct.usable(session):
            return await direct.fetchval(session, _finish_statement(shape), params) is not None
        connection = await session.connection()
        written = (await connection.execute(_finish_statement(shape), params)).scalar()
        return written is not None
    update, upserts = _finish_steps(shape)
    if await direct.fetchval(session, update, params) is None:
        return False
    for upsert in upserts:
        await direct.fetchval(session, upsert, params)
    return True


_EXECUTION_COLUMNS = {attr.key: attr.columns[0].name for attr in Execution.__mapper__.column_attrs}
_FINISH_STATEMENTS: dict[Any, sa.Select[tuple[uuid.UUID]]] = {}
_FINISH_STEPS: dict[Any, tuple[Any, list[Any]]] = {}


@dataclass(frozen=True, slots=True)
class _FinishShape:
    """What decides the finishing statements' text: the columns written, whether there is a
    latency (the latency rollups), and the counter names."""

    columns: tuple[str, ...]
    with_latency: bool
    counters: tuple[str, ...]
    totals: tuple[str, ...]

    def rollups(self) -> list[tuple[Any, str, tuple[str, ...], tuple[str, ...]]]:
        """(table, parameter prefix, key columns, added columns) per rollup table."""
        from prompt_ledger.db.tables import execution_totals

        hourly = ("prompt_id", "hour")
        tables: list[tuple[Any, str, tuple[str, ...], tuple[str, ...]]] = [
            (ExecutionRollup.__table__, "rollup", hourly, self.counters)
        ]
        if self.with_latency:
            tables.append((LatencyRollup.__table__, "latency", (*hourly, "bucket"), ("count",)))
            tables.append(
                (LatencyTotal.__table__, "latency_total", ("prompt_id", "bucket"), ("count",))
            )
        totals_keys = ("prompt_id", "model_id", "execution_mode", "status")
        tables.append((execution_totals, "totals", totals_keys, self.totals))
        return tables

    def update(self) -> Any:
        e = cast(sa.Table, Execution.__table__)
        return (
            sa.update(e)
            .where(
                e.c.id == sa.bindparam("execution_id"),
                e.c.status == ExecutionStatus.RUNNING,
                e.c.attempts == sa.bindparam("attempt"),
            )
            .values({c: sa.bindparam(f"set_{c}", type_=e.c[c].type) for c in self.columns})
            .returning(e.c.id)
        )


def _prefixed(prefix: str, row: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}_{k}": v for k, v in row.items()}


def _add_on_conflict(insert: Any, table: Any, keys: tuple[str, ...], adds: tuple[str, ...]) -> Any:
    return insert.on_conflict_do_update(
        index_elements=list(keys),
        set_={k: table.c[k] + insert.excluded[k] for k in adds},
    )


def _finish_statement(shape: _FinishShape) -> sa.Select[tuple[uuid.UUID]]:
    """PostgreSQL: the one finishing statement for this shape (built once)."""
    if (cached := _FINISH_STATEMENTS.get(shape)) is not None:
        return cached
    finished = shape.update().cte("finished")
    ctes = []
    for table, name, keys, adds in shape.rollups():
        names = [*keys, *adds]
        row = sa.select(
            *(sa.bindparam(f"{name}_{k}", type_=table.c[k].type).label(k) for k in names)
        ).select_from(finished)
        insert = postgresql.insert(table).from_select(names, row)
        ctes.append(_add_on_conflict(insert, table, keys, adds).cte(name))
    statement = sa.select(finished.c.id).add_cte(*ctes)
    _FINISH_STATEMENTS[shape] = statement
    return statement


def _finish_steps(shape: _FinishShape) -> tuple[Any, list[Any]]:
    """SQLite: the guarded UPDATE, then one upsert per rollup table (built once)."""
    if (cached := _FINISH_STEPS.get(shape)) is not None:
        return cached
    upserts = []
    for table, name, keys, adds in shape.rollups():
        values = {k: sa.bindparam(f"{name}_{k}", type_=table.c[k].type) for k in (*keys, *adds)}
        upserts.append(_add_on_conflict(sqlite.insert(table).values(values), table, keys, adds))
    steps = _FINISH_STEPS[shape] = (shape.update(), upserts)
    return steps


async def get_prompt_with_active_version(
    session: AsyncSession, name: str
) -> tuple[Prompt, PromptVersion | None] | None:
    """A prompt and its active version in one query (the registry read path). Needs a
    hot-path session (see ``db.direct``)."""
    global _PROMPT_WITH_ACTIVE
    if _PROMPT_WITH_ACTIVE is None:
        p = cast(sa.Table, Prompt.__table__)
        v = cast(sa.Table, PromptVersion.__table__)
        columns = [c.label(f"p_{c.name}") for c in p.c] + [c.label(f"v_{c.name}") for c in v.c]
        _PROMPT_WITH_ACTIVE = (
            sa.select(*columns)
            .select_from(p.outerjoin(v, v.c.id == p.c.active_version_id))
            .where(p.c.name == sa.bindparam("name"))
        )
    found = await direct.fetchrow(session, _PROMPT_WITH_ACTIVE, {"name": name})
    if found is None:
        return None
    return _entity(Prompt, "p_", found), _entity(PromptVersion, "v_", found)


_PROMPT_WITH_ACTIVE: Any = None


async def claim_queued_with_context(
    session: AsyncSession, execution_id: uuid.UUID, *, now: datetime
) -> tuple[Execution, Prompt, PromptVersion, Model] | None:
    """``claim_queued`` and ``get_execution_context`` together: one statement on PostgreSQL
    (the claim as a data-modifying CTE joined to its prompt, version and model)."""
    if not (is_postgres(session) and direct.usable(session)):
        execution = await claim_queued(session, execution_id, now=now)
        if execution is None:
            return None
        return (execution, *await get_execution_context(session, execution))
    found = await direct.fetchrow(
        session, _claim_with_context_statement(), {"execution_id": execution_id, "now": now}
    )
    if found is None:
        return None
    return (
        _entity(Execution, "e_", found),
        _entity(Prompt, "p_", found),
        _entity(PromptVersion, "v_", found),
        _entity(Model, "m_", found),
    )


_ENTITY_COLUMNS[Execution] = [
    (attr.key, attr.columns[0].name) for attr in Execution.__mapper__.column_attrs
]
_CLAIM_WITH_CONTEXT: Any = None


def _claim_with_context_statement() -> Any:
    global _CLAIM_WITH_CONTEXT
    if _CLAIM_WITH_CONTEXT is not None:
        return _CLAIM_WITH_CONTEXT
    e = cast(sa.Table, Execution.__table__)
    p = cast(sa.Table, Prompt.__table__)
    v = cast(sa.Table, PromptVersion.__table__)
    m = cast(sa.Table, Model.__table__)
    now = sa.bindparam("now", type_=e.c.started_at.type)
    claimed = (
        sa.update(e)
        .where(
            e.c.id == sa.bindparam("execution_id"),
            e.c.status == ExecutionStatus.QUEUED,
            sa.or_(e.c.not_before.is_(None), e.c.not_before <= now),
        )
        .values(status=ExecutionStatus.RUNNING, started_at=now, attempts=e.c.attempts + 1)
        .returning(*e.c)
        .cte("claimed")
    )
    columns = [c.label(f"e_{c.name}") for c in claimed.c] + [
        column.label(f"{prefix}{column.name}")
        for prefix, table in (("p_", p), ("v_", v), ("m_", m))
        for column in table.c
    ]
    _CLAIM_WITH_CONTEXT = sa.select(*columns).select_from(
        claimed.join(p, p.c.id == claimed.c.prompt_id)
        .join(v, v.c.id == claimed.c.prompt_version_id)
        .join(m, m.c.id == claimed.c.model_id)
    )
    return _CLAIM_WITH_CONTEXT
