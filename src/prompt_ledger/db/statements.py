"""Every statement of the execution ledger, each defined once, in SQLAlchemy Core.

Each state transition is one statement: resolve (prompt + version + model), insert,
claim, write an attempt (requeue or recover), finish (the row, its hourly rollups, latency
histograms and all-time totals), plus the reads around them. They run through
``db.executor.Executor`` on every backend and driver.

Statements that do not depend on the dialect are built at import. Those that do (``ON
CONFLICT`` is a dialect construct; PostgreSQL joins a transition and its rollups into one
statement with data-modifying CTEs, SQLite runs them as the steps of one transaction) come
from builders cached per (dialect, shape), so each is still built once. Values, including
the statuses a transition moves between, are passed by the services: the rules live there.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from prompt_ledger.db.tables import (
    EXECUTION_TOTAL_COUNTERS,
    Execution,
    ExecutionRollup,
    LatencyRollup,
    LatencyTotal,
    Model,
    Prompt,
    PromptVersion,
    execution_totals,
)

_executions = cast(sa.Table, Execution.__table__)
_prompts = cast(sa.Table, Prompt.__table__)
_versions = cast(sa.Table, PromptVersion.__table__)
_models = cast(sa.Table, Model.__table__)

# Result columns are labelled by table: ``e_``, ``p_``, ``v_``, ``m_`` + the column name.
PREFIXES = {"e_": _executions, "p_": _prompts, "v_": _versions, "m_": _models}

ROLLUP_COUNTERS = (
    "executions",
    "succeeded",
    "failed",
    "latency_count",
    "latency_sum",
    "prompt_tokens",
    "response_tokens",
)


def _labelled(prefix: str, columns: Any) -> list[Any]:
    return [column.label(f"{prefix}{column.name}") for column in columns]


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


# --- reads -------------------------------------------------------------------------------

PROMPT_WITH_ACTIVE_VERSION = (
    sa.select(*_labelled("p_", _prompts.c), *_labelled("v_", _versions.c))
    .select_from(_prompts.outerjoin(_versions, _versions.c.id == _prompts.c.active_version_id))
    .where(_prompts.c.name == sa.bindparam("name"))
)
"""The registry read: a prompt by ``name`` and its active version (null columns if none)."""


def _resolve(version_on: sa.ColumnElement[bool]) -> sa.Select[Any]:
    model_on = sa.and_(
        _models.c.provider == _param("provider", _models.c.provider),
        _models.c.model_name == sa.bindparam("model_name"),
        _models.c.is_active,
    )
    return (
        sa.select(
            *_labelled("p_", _prompts.c), *_labelled("v_", _versions.c), *_labelled("m_", _models.c)
        )
        .select_from(_prompts.outerjoin(_versions, version_on).outerjoin(_models, model_on))
        .where(_prompts.c.name == sa.bindparam("name"))
    )


RESOLVE_ACTIVE = _resolve(_versions.c.id == _prompts.c.active_version_id)
"""What a run needs: the prompt by ``name``, its active version, the active model
(``provider``, ``model_name``); a missing version or model has null columns."""

RESOLVE_NUMBER = _resolve(
    sa.and_(
        _versions.c.prompt_id == _prompts.c.id,
        _versions.c.version_number == sa.bindparam("version_number"),
    )
)
"""As ``RESOLVE_ACTIVE``, with version ``version_number`` instead of the active one."""


def _with_context(executions: Any) -> sa.Select[Any]:
    """Execution columns (``e_``) with its prompt, version and model."""
    return sa.select(
        *_labelled("e_", executions.c),
        *_labelled("p_", _prompts.c),
        *_labelled("v_", _versions.c),
        *_labelled("m_", _models.c),
    ).select_from(
        executions.join(_prompts, _prompts.c.id == executions.c.prompt_id)
        .join(_versions, _versions.c.id == executions.c.prompt_version_id)
        .join(_models, _models.c.id == executions.c.model_id)
    )


EXECUTION_BY_ID = _with_context(_executions).where(
    _executions.c.id == _param("execution_id", _executions.c.id)
)
"""An execution by ``execution_id``, with its prompt, version and model."""

EXECUTION_BY_KEY = _with_context(_executions).where(
    _executions.c.idempotency_key == sa.bindparam("key")
)
"""The execution holding idempotency ``key``, with its prompt, version and model."""

STALE_RUNNING = (
    sa.select(*_executions.c)
    .where(
        _executions.c.status == _param("running", _executions.c.status),
        _executions.c.started_at < _param("started_before", _executions.c.started_at),
    )
    .order_by(_executions.c.started_at)
    .limit(sa.bindparam("limit"))
)
"""Executions in status ``running`` since before ``started_before``, oldest first."""


# --- writes ------------------------------------------------------------------------------


def _insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


@functools.cache
def insert_execution(dialect: str) -> Any:
    """A new execution (every column a parameter); no row back when its idempotency key is
    already taken (``ON CONFLICT DO NOTHING`` waits for a concurrent holder to commit)."""
    return (
        _insert(dialect)(_executions)
        .values({c.name: _param(c.name, c) for c in _executions.c})
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(_executions.c.id)
    )


def _guarded_update(columns: Sequence[str], *, attempt_guard: bool) -> Any:
    """Set ``columns`` (parameters ``set_<column>``) on ``execution_id`` if it is still in
    status ``from_status`` (and, with the attempt guard, on attempt ``attempt``): duplicate
    deliveries and late workers change nothing."""
    e = _executions
    guard = [
        e.c.id == _param("execution_id", e.c.id),
        e.c.status == _param("from_status", e.c.status),
    ]
    if attempt_guard:
        guard.append(e.c.attempts == sa.bindparam("attempt"))
    return sa.update(e).where(*guard).values({c: _param(f"set_{c}", e.c[c]) for c in columns})


_now = _param("now", _executions.c.started_at)

CLAIM = (
    sa.update(_executions)
    .where(
        _executions.c.id == _param("execution_id", _executions.c.id),
        _executions.c.status == _param("from_status", _executions.c.status),
        sa.or_(_executions.c.not_before.is_(None), _executions.c.not_before <= _now),
    )
    .values(
        status=_param("to_status", _executions.c.status),
        started_at=_now,
        attempts=_executions.c.attempts + 1,
    )
    .returning(*_executions.c)
)
"""Take ``execution_id`` from ``from_status`` to ``to_status`` if it is due at ``now``,
counting the attempt; the row back, or none when it was not ours to take."""


@functools.cache
def claim(dialect: str) -> tuple[Any, ...]:
    """The claim with the execution's prompt, version and model (``EXECUTION_BY_ID``'s
    columns): one statement on PostgreSQL; on SQLite (no data-modifying CTEs) the claim,
    then ``EXECUTION_BY_ID``, in one transaction."""
    if dialect == "postgresql":
        return (_with_context(CLAIM.cte("claimed")),)
    return (CLAIM, EXECUTION_BY_ID)


@functools.cache
def write_attempt(columns: tuple[str, ...]) -> Any:
    """A non-final outcome of the attempt ``attempt`` (requeue for a retry, recovery to
    ``queued``); the id back when written."""
    return _guarded_update(columns, attempt_guard=True).returning(_executions.c.id)


_Rollup = tuple[sa.Table, str, tuple[str, ...], tuple[str, ...]]


def _rollup_tables(with_latency: bool) -> list[_Rollup]:
    """(table, parameter prefix, key columns, added columns) of each rollup a finished
    execution counts in."""
    hourly: tuple[str, ...] = ("prompt_id", "hour")
    tables: list[_Rollup] = [
        (cast(sa.Table, ExecutionRollup.__table__), "rollup", hourly, ROLLUP_COUNTERS),
    ]
    if with_latency:
        hourly_latency = cast(sa.Table, LatencyRollup.__table__)
        all_time_latency = cast(sa.Table, LatencyTotal.__table__)
        tables.append((hourly_latency, "latency", (*hourly, "bucket"), ("count",)))
        tables.append((all_time_latency, "latency_total", ("prompt_id", "bucket"), ("count",)))
    totals_keys = ("prompt_id", "model_id", "execution_mode", "status")
    tables.append((execution_totals, "totals", totals_keys, EXECUTION_TOTAL_COUNTERS))
    return tables


def _add_on_conflict(insert: Any, table: sa.Table, keys: Sequence[str], adds: Sequence[str]) -> Any:
    return insert.on_conflict_do_update(
        index_elements=list(keys), set_={k: table.c[k] + insert.excluded[k] for k in adds}
    )


@functools.cache
def finish(
    dialect: str, columns: tuple[str, ...], *, attempt_guard: bool, with_latency: bool
) -> tuple[Any, ...]:
    """A final outcome and its rollups, atomically, if the guard still holds (see
    ``_guarded_update``): the id back when written, nothing counted otherwise.

    Rollup parameters are ``<prefix>_<column>`` (prefixes in ``_rollup_tables``). PostgreSQL:
    one statement, each rollup upsert selecting from the update (so nothing is added when it
    matched no row), one round trip, the hot rollup rows locked only for that statement.
    SQLite: the update, then one upsert per table, as one transaction.
    """
    update = _guarded_update(columns, attempt_guard=attempt_guard).returning(_executions.c.id)
    rollups = _rollup_tables(with_latency)
    if dialect == "postgresql":
        finished = update.cte("finished")
        upserts = []
        for table, prefix, keys, adds in rollups:
            names = [*keys, *adds]
            row = sa.select(
                *(_param(f"{prefix}_{k}", table.c[k]).label(k) for k in names)
            ).select_from(finished)
            insert = postgresql.insert(table).from_select(names, row)
            upserts.append(_add_on_conflict(insert, table, keys, adds).cte(prefix))
        return (sa.select(finished.c.id).add_cte(*upserts),)
    steps = [update]
    for table, prefix, keys, adds in rollups:
        values = {k: _param(f"{prefix}_{k}", table.c[k]) for k in (*keys, *adds)}
        steps.append(_add_on_conflict(sqlite.insert(table).values(values), table, keys, adds))
    return tuple(steps)


MARK_UNDISPATCHED = (
    sa.update(_executions)
    .where(
        _executions.c.id.in_(
            sa.select(_executions.c.id)
            .where(
                _executions.c.status == _param("queued", _executions.c.status),
                sa.or_(
                    _executions.c.dispatched_at.is_(None),
                    _executions.c.dispatched_at
                    < _param("published_before", _executions.c.dispatched_at),
                ),
                sa.or_(
                    _executions.c.not_before.is_(None),
                    _executions.c.not_before <= _now,
                ),
            )
            .order_by(_executions.c.created_at)
            .limit(sa.bindparam("limit"))
            .with_for_update(skip_locked=True)  # PostgreSQL: two sweepers take distinct rows
        )
    )
    .values(dispatched_at=_now)
    .returning(_executions.c.id)
)
"""Stamp ``dispatched_at = now`` on up to ``limit`` due ``queued`` rows whose last
publication is older than ``published_before``; their ids back."""
