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
import json
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.types import TypeDecorator

from prompt_ledger.db.tables import (
    EXECUTION_TOTAL_COUNTERS,
    Execution,
    ExecutionRollup,
    LatencyRollup,
    LatencyTotal,
    Model,
    Prompt,
    PromptLabel,
    PromptVersion,
    execution_totals,
)

_executions = cast(sa.Table, Execution.__table__)
_prompts = cast(sa.Table, Prompt.__table__)
_versions = cast(sa.Table, PromptVersion.__table__)
_models = cast(sa.Table, Model.__table__)
_labels = cast(sa.Table, PromptLabel.__table__)
_hourly = cast(sa.Table, ExecutionRollup.__table__)

# Result columns are labelled by table: ``e_``, ``p_``, ``v_``, ``m_``, ``l_`` + the column name.
PREFIXES = {"e_": _executions, "p_": _prompts, "v_": _versions, "m_": _models, "l_": _labels}

ROLLUP_COUNTERS = (
    "executions",
    "succeeded",
    "failed",
    "latency_count",
    "latency_sum",
    "prompt_tokens",
    "response_tokens",
)
"""The integer counters of ``execution_rollups`` (``r_<name>`` in a finishing item)."""

ROLLUP_SUMS = ("cost_usd",)
"""Its decimal sums (``r_<name>``, typed as the column)."""


def _labelled(prefix: str, columns: Any) -> list[Any]:
    return [column.label(f"{prefix}{column.name}") for column in columns]


def _param(name: str, column: sa.ColumnElement[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


# --- reads -------------------------------------------------------------------------------

PROMPT_WITH_ACTIVE_VERSION = (
    sa.select(*_labelled("p_", _prompts.c), *_labelled("v_", _versions.c))
    .select_from(_prompts.outerjoin(_versions, _versions.c.id == _prompts.c.active_version_id))
    .where(_prompts.c.name == sa.bindparam("name"))
)
"""The registry read: a prompt by ``name`` and its active version (null columns if none)."""

PROMPT_WITH_VERSION_NUMBER = (
    sa.select(*_labelled("p_", _prompts.c), *_labelled("v_", _versions.c))
    .select_from(
        _prompts.outerjoin(
            _versions,
            sa.and_(
                _versions.c.prompt_id == _prompts.c.id,
                _versions.c.version_number == sa.bindparam("version_number"),
            ),
        )
    )
    .where(_prompts.c.name == sa.bindparam("name"))
)
"""A prompt by ``name`` and its version ``version_number`` (null columns if none)."""

PROMPT_WITH_LABEL = (
    sa.select(
        *_labelled("p_", _prompts.c), *_labelled("l_", _labels.c), *_labelled("v_", _versions.c)
    )
    .select_from(
        _prompts.outerjoin(
            _labels,
            sa.and_(_labels.c.prompt_id == _prompts.c.id, _labels.c.label == sa.bindparam("label")),
        ).outerjoin(
            _versions,
            sa.and_(
                _versions.c.prompt_id == _prompts.c.id,
                _versions.c.version_number == _labels.c.version_number,
            ),
        )
    )
    .where(_prompts.c.name == sa.bindparam("name"))
)
"""A prompt by ``name``, its label ``label`` and the version the label points to (null
columns for a missing label, and for the version of a split label)."""

MAX_SPLIT_ENTRIES = 10

VERSIONS_BY_NUMBERS = sa.select(*_labelled("v_", _versions.c)).where(
    _versions.c.prompt_id == sa.bindparam("prompt_id"),
    _versions.c.version_number.in_(
        [sa.bindparam(f"n{i}", type_=sa.Integer()) for i in range(MAX_SPLIT_ENTRIES)]
    ),
)
"""Versions ``n0`` … ``n9`` of ``prompt_id`` (one shape for any split: unused slots null)."""


def _resolve(version_on: sa.ColumnElement[bool], *, via_label: bool = False) -> sa.Select[Any]:
    # A run that names no model (or no provider) takes the version config's (SPEC §9.1),
    # the provider defaulting to ``default_provider``; one query either way.
    config = _versions.c.config
    provider = sa.func.coalesce(
        sa.bindparam("provider", type_=sa.String()),
        config["provider"].as_string(),
        sa.bindparam("default_provider", type_=sa.String()),
    )
    model_name = sa.func.coalesce(
        sa.bindparam("model_name", type_=sa.String()), config["model_name"].as_string()
    )
    model_on = sa.and_(
        _models.c.provider == sa.cast(provider, _models.c.provider.type),
        _models.c.model_name == model_name,
        _models.c.is_active,
    )
    columns = [*_labelled("p_", _prompts.c), *_labelled("v_", _versions.c)]
    columns += _labelled("m_", _models.c)
    source: sa.FromClause = _prompts
    if via_label:
        columns += _labelled("l_", _labels.c)
        label_on = sa.and_(
            _labels.c.prompt_id == _prompts.c.id, _labels.c.label == sa.bindparam("label")
        )
        source = _prompts.outerjoin(_labels, label_on)
    return (
        sa.select(*columns)
        .select_from(source.outerjoin(_versions, version_on).outerjoin(_models, model_on))
        .where(_prompts.c.name == sa.bindparam("name"))
    )


RESOLVE_ACTIVE = _resolve(_versions.c.id == _prompts.c.active_version_id)
"""What a run needs: the prompt by ``name``, its active version, the active model
(``provider``, ``model_name``; null ones: the version config's, then ``default_provider``);
a missing version or model has null columns."""

RESOLVE_NUMBER = _resolve(
    sa.and_(
        _versions.c.prompt_id == _prompts.c.id,
        _versions.c.version_number == sa.bindparam("version_number"),
    )
)
"""As ``RESOLVE_ACTIVE``, with version ``version_number`` instead of the active one."""

RESOLVE_LABEL = _resolve(
    sa.and_(
        _versions.c.prompt_id == _prompts.c.id,
        _versions.c.version_number == _labels.c.version_number,
    ),
    via_label=True,
)
"""As ``RESOLVE_ACTIVE``, with the version label ``label`` points to, and the label's row
(``l_``; null columns for a missing label; a split label has no version here)."""


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


class _JSONText(TypeDecorator[Any]):
    """A JSON value sent as its text: asyncpg applies its JSON codec to a ``jsonb``
    parameter but not to the elements of a ``jsonb[]`` one, so arrays carry text."""

    impl = sa.Text()
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else json.dumps(value)


class _EachOf(TypeDecorator[list[Any]]):
    """The array parameter of an ``unnest``: each element goes through ``item``'s bind
    processing, as a scalar parameter would (the drivers send the list as it is)."""

    impl = sa.types.NullType()
    cache_ok = True

    def __init__(self, item: sa.types.TypeEngine[Any]) -> None:
        super().__init__()
        self.item = item

    def bind_processor(self, dialect: sa.Dialect) -> Any:
        process = self.item.dialect_impl(dialect).bind_processor(dialect)
        if process is None:
            return None
        return lambda values: None if values is None else [process(v) for v in values]


def _unnest(columns: Sequence[Any], name: str) -> Any:
    """PostgreSQL: the rows of a batch as ``unnest`` of one typed array parameter per
    column (parameter = the column's name), JSON columns cast back from text. The statement
    and its plan are the same for every batch size: compiled, prepared and planned once per
    connection, where a ``VALUES`` list is a new statement for each size (compiled in tens
    of ms, and prepared again on every pooled connection, crowding the driver's cache)."""
    sent = [_JSONText() if isinstance(c.type, sa.JSON) else c.type for c in columns]
    arrays = [
        sa.cast(sa.bindparam(c.name, type_=_EachOf(type_)), postgresql.ARRAY(type_))
        for c, type_ in zip(columns, sent, strict=True)
    ]
    typed = [sa.column(c.name, type_) for c, type_ in zip(columns, sent, strict=True)]
    rows = sa.func.unnest(*arrays).table_valued(*typed).render_derived(name=f"{name}_arrays")
    return sa.select(
        *(
            sa.cast(rows.c[c.name], c.type).label(c.name)
            if isinstance(c.type, sa.JSON)
            else rows.c[c.name]
            for c in columns
        )
    ).subquery(name)


def batch_params(dialect: str, items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The parameters of a batch statement (``insert_executions``, ``finish``): on
    PostgreSQL one array per column (``_unnest``); elsewhere ``<name>_<i>`` for item ``i``."""
    if dialect == "postgresql":
        return {name: [item[name] for item in items] for name in items[0]}
    return {f"{name}_{i}": value for i, item in enumerate(items) for name, value in item.items()}


@functools.cache
def insert_executions(dialect: str, rows: int) -> Any:
    """``rows`` new executions (``batch_params``; one statement for any ``rows`` on
    PostgreSQL); the ids of those inserted come back: not the ones whose idempotency key is
    already taken (``ON CONFLICT DO NOTHING`` waits for a concurrent holder to commit)."""
    if dialect == "postgresql":
        return _insert_executions_unnest()
    return (
        sqlite.insert(_executions)
        .values([{c.name: _param(f"{c.name}_{i}", c) for c in _executions.c} for i in range(rows)])
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(_executions.c.id)
    )


@functools.cache
def _insert_executions_unnest() -> Any:
    batch = _unnest(list(_executions.c), "batch")
    names = [c.name for c in _executions.c]
    return (
        postgresql.insert(_executions)
        .from_select(names, sa.select(*(batch.c[n] for n in names)))
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(_executions.c.id)
    )


def _guarded_update(columns: Sequence[str]) -> Any:
    """Set ``columns`` (parameters ``set_<column>``) on ``execution_id`` if it is still in
    status ``from_status`` on attempt ``attempt``: duplicate deliveries and late workers
    change nothing."""
    e = _executions
    return (
        sa.update(e)
        .where(
            e.c.id == _param("execution_id", e.c.id),
            e.c.status == _param("from_status", e.c.status),
            e.c.attempts == sa.bindparam("attempt"),
        )
        .values({c: _param(f"set_{c}", e.c[c]) for c in columns})
    )


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
    return _guarded_update(columns).returning(_executions.c.id)


FINISH_COLUMNS = (
    "status",
    "response_text",
    "prompt_tokens",
    "response_tokens",
    "latency_ms",
    "provider_request_id",
    "error_type",
    "error_message",
    "completed_at",
    "cost_usd",
    "price_source",
    "time_to_first_token_ms",
)
"""What every final outcome writes (the caller passes the row as it will read)."""

TOTALS_KEY = ("prompt_id", "model_id", "execution_mode", "status")


def _finish_columns() -> list[sa.ColumnClause[Any]]:
    """One finishing item: the guard, what it writes, and what it adds to the rollups
    (``r_`` hourly counters, ``t_`` all-time totals; ``bucket`` null without a latency)."""
    e = _executions
    typed = [
        ("id", e.c.id.type),
        ("from_status", e.c.status.type),
        ("attempt", sa.Integer()),  # null: no attempt guard (cancel)
        *((name, e.c[name].type) for name in FINISH_COLUMNS),
        ("prompt_id", sa.Integer()),
        ("model_id", sa.Integer()),
        ("execution_mode", e.c.execution_mode.type),
        ("hour", e.c.created_at.type),
        ("bucket", sa.SmallInteger()),
        *((f"r_{name}", sa.BigInteger()) for name in ROLLUP_COUNTERS),
        *((f"r_{name}", _hourly.c[name].type) for name in ROLLUP_SUMS),
        *((f"t_{name}", sa.BigInteger()) for name in EXECUTION_TOTAL_COUNTERS),
    ]
    return [sa.column(name, type_) for name, type_ in typed]


FINISH_ITEM = tuple(column.name for column in _finish_columns())
"""The parameters of one finishing item (``<name>_<i>`` for item ``i`` of a batch)."""


def _add_on_conflict(insert: Any, table: sa.Table, keys: Sequence[str], adds: Sequence[str]) -> Any:
    return insert.on_conflict_do_update(
        index_elements=list(keys), set_={k: table.c[k] + insert.excluded[k] for k in adds}
    )


@functools.cache
def finish(dialect: str) -> tuple[Any, ...]:
    """Final outcomes and their rollups, atomically, each only if its guard still holds (the
    row is in ``from_status``, and on ``attempt`` when that is not null): the ids written
    come back; nothing is counted for the others.

    PostgreSQL: one statement for a whole batch (``batch_params``). The items are unnested
    from arrays; the guarded ``UPDATE … FROM`` returns the rows it wrote, and each rollup
    upsert adds the sums of those rows per key (grouped, so a batch touching one rollup row
    twice adds once). One round trip and one commit for every run finishing at once, and the
    hot rollup rows are locked for that statement only. SQLite (no data-modifying CTEs): a
    one-item form (parameters of item 0), the update then one upsert per table, which the
    caller runs per item in one transaction.
    """
    if dialect != "postgresql":
        return _finish_one()
    return _finish_unnest()


@functools.cache
def _finish_unnest() -> tuple[Any, ...]:
    batch = sa.select(_unnest(_finish_columns(), "items")).cte("batch")
    e = _executions
    finished = (
        sa.update(e)
        .where(
            e.c.id == batch.c.id,
            e.c.status == batch.c.from_status,
            sa.or_(batch.c.attempt.is_(None), e.c.attempts == batch.c.attempt),
        )
        .values({name: batch.c[name] for name in FINISH_COLUMNS})
        .returning(e.c.id)
        .cte("finished")
    )
    counted = (sa.select(batch).select_from(batch.join(finished, finished.c.id == batch.c.id))).cte(
        "counted"
    )
    upserts = []
    for table, keys, adds, where in _rollups(counted):
        summed = [
            sa.func.count() if add == "count" else sa.func.sum(counted.c[source])
            for add, source in adds
        ]
        select = (
            sa.select(*(counted.c[k] for k in keys), *summed)
            .where(*where)
            .group_by(*(counted.c[k] for k in keys))
        )
        names = [*keys, *(add for add, _ in adds)]
        insert = postgresql.insert(table).from_select(names, select)
        upserts.append(
            _add_on_conflict(insert, table, keys, [add for add, _ in adds]).cte(f"add_{table.name}")
        )
    return (sa.select(finished.c.id).add_cte(*upserts),)


def _rollups(
    item: Any,
) -> list[tuple[sa.Table, tuple[str, ...], list[tuple[str, str]], list[Any]]]:
    """Per rollup table: its key columns, (column, item column) pairs it adds, and the
    condition for an item to count in it."""
    hourly = cast(sa.Table, ExecutionRollup.__table__)
    latency = cast(sa.Table, LatencyRollup.__table__)
    latency_total = cast(sa.Table, LatencyTotal.__table__)
    with_latency = [item.c.bucket.is_not(None)]
    return [
        (
            hourly,
            ("prompt_id", "hour"),
            [(n, f"r_{n}") for n in (*ROLLUP_COUNTERS, *ROLLUP_SUMS)],
            [],
        ),
        (latency, ("prompt_id", "hour", "bucket"), [("count", "count")], with_latency),
        (latency_total, ("prompt_id", "bucket"), [("count", "count")], with_latency),
        (execution_totals, TOTALS_KEY, [(n, f"t_{n}") for n in EXECUTION_TOTAL_COUNTERS], []),
    ]


def _finish_one() -> tuple[Any, ...]:
    """SQLite's one-item finish (parameters of item 0): the guarded update, then an upsert
    per rollup table (the latency ones only when there is a bucket)."""
    e = _executions
    item = {c.name: _param(f"{c.name}_0", c) for c in _finish_columns()}
    update = (
        sa.update(e)
        .where(
            e.c.id == item["id"],
            e.c.status == item["from_status"],
            sa.or_(item["attempt"].is_(None), e.c.attempts == item["attempt"]),
        )
        .values({name: item[name] for name in FINISH_COLUMNS})
        .returning(e.c.id)
    )
    steps: list[Any] = [update]
    probe = sa.select(*(value.label(name) for name, value in item.items())).subquery()
    for table, keys, adds, where in _rollups(probe):
        needed = dict.fromkeys([*keys, *(src for add, src in adds if add != "count"), "bucket"])
        one = sa.select(*(item[name].label(name) for name in needed)).subquery("item")
        condition = [one.c.bucket.is_not(None)] if where else []
        values = [
            sa.literal(1, sa.BigInteger()) if add == "count" else one.c[source]
            for add, source in adds
        ]
        select = sa.select(*(one.c[k] for k in keys), *values).where(sa.true(), *condition)
        names = [*keys, *(add for add, _ in adds)]
        insert = sqlite.insert(table).from_select(names, select)
        steps.append(_add_on_conflict(insert, table, keys, [add for add, _ in adds]))
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
