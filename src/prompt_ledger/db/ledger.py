"""The execution ledger's reads and transitions, as typed calls over ``db.statements``.

SQL only: which status a transition starts from and what it writes are the caller's
(``services.executions``). Rows come back as transient ORM objects (not attached to any
session), so the services read them the same way whichever path loaded them.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar

from prompt_ledger.db import statements
from prompt_ledger.db.executor import Executor
from prompt_ledger.db.session import Database
from prompt_ledger.db.tables import (
    Base,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    Model,
    Prompt,
    PromptLabel,
    PromptVersion,
    ProviderName,
)

_T = TypeVar("_T", bound=Base)

_ATTRIBUTES: dict[type[Base], list[tuple[str, str]]] = {
    cls: [(attr.key, attr.columns[0].name) for attr in cls.__mapper__.column_attrs]
    for cls in (Prompt, PromptVersion, Model, Execution, PromptLabel)
}
_EXECUTION_COLUMNS = dict(_ATTRIBUTES[Execution])
_EXECUTION_ATTRIBUTES = {column: key for key, column in _ATTRIBUTES[Execution]}

FINISH_ATTRIBUTES = tuple(_EXECUTION_ATTRIBUTES[name] for name in statements.FINISH_COLUMNS)
"""The attributes every final outcome writes (``Finish.values``)."""

ExecutionWithContext = tuple[Execution, Prompt, PromptVersion, Model]


def _entity(cls: type[_T], prefix: str, row: dict[str, Any]) -> _T | None:
    """The ``prefix``-labelled columns of ``row`` as a transient ``cls``; None for the null
    columns of a missing outer-joined row."""
    if row[f"{prefix}id"] is None:
        return None
    return cls(**{key: row[prefix + column] for key, column in _ATTRIBUTES[cls]})


def _required(cls: type[_T], prefix: str, row: dict[str, Any]) -> _T:
    entity = _entity(cls, prefix, row)
    assert entity is not None, f"inner-joined {cls.__name__} is never null"
    return entity


def _with_context(row: dict[str, Any] | None) -> ExecutionWithContext | None:
    if row is None:
        return None
    return (
        _required(Execution, "e_", row),
        _required(Prompt, "p_", row),
        _required(PromptVersion, "v_", row),
        _required(Model, "m_", row),
    )


def _columns(values: dict[str, Any]) -> dict[str, Any]:
    """Attribute names (``metadata_``) as column names (``metadata``)."""
    return {_EXECUTION_COLUMNS[key]: value for key, value in values.items()}


# --- reads ---------------------------------------------------------------------------------


async def get_prompt_with_active_version(
    ex: Executor, name: str
) -> tuple[Prompt, PromptVersion | None] | None:
    row = await ex.fetch_one(statements.PROMPT_WITH_ACTIVE_VERSION, {"name": name})
    if row is None:
        return None
    return _required(Prompt, "p_", row), _entity(PromptVersion, "v_", row)


async def get_prompt_with_version(
    ex: Executor, name: str, version_number: int
) -> tuple[Prompt, PromptVersion | None] | None:
    row = await ex.fetch_one(
        statements.PROMPT_WITH_VERSION_NUMBER, {"name": name, "version_number": version_number}
    )
    if row is None:
        return None
    return _required(Prompt, "p_", row), _entity(PromptVersion, "v_", row)


async def get_prompt_with_label(
    ex: Executor, name: str, label: str
) -> tuple[Prompt, PromptLabel | None, PromptVersion | None] | None:
    """The prompt, its label ``label`` (None if it has none) and the version a one-version
    label points to (None for a split). None when the prompt does not exist."""
    row = await ex.fetch_one(statements.PROMPT_WITH_LABEL, {"name": name, "label": label})
    if row is None:
        return None
    found = None
    if row["l_label"] is not None:
        found = PromptLabel(**{key: row["l_" + column] for key, column in _ATTRIBUTES[PromptLabel]})
    return _required(Prompt, "p_", row), found, _entity(PromptVersion, "v_", row)


async def get_versions_by_numbers(
    ex: Executor, prompt_id: int, numbers: Sequence[int]
) -> dict[int, PromptVersion]:
    """Versions of ``prompt_id`` by number (at most ``statements.MAX_SPLIT_ENTRIES``)."""
    slots = statements.MAX_SPLIT_ENTRIES
    assert len(numbers) <= slots
    padded = [*numbers, *([None] * (slots - len(numbers)))]
    params: dict[str, Any] = {"prompt_id": prompt_id} | {f"n{i}": n for i, n in enumerate(padded)}
    rows = await ex.fetch_all(statements.VERSIONS_BY_NUMBERS, params)
    versions = [_required(PromptVersion, "v_", row) for row in rows]
    return {v.version_number: v for v in versions}


async def resolve_run(
    ex: Executor,
    name: str,
    *,
    version_number: int | None,
    provider: ProviderName | None,
    model_name: str | None,
    default_provider: ProviderName,
) -> tuple[Prompt, PromptVersion | None, Model | None] | None:
    """The prompt by name, the version to run (that number, else the active one) and the
    active model named (a None provider or model name: the version config's; the provider
    then ``default_provider``). None when the prompt does not exist; a missing version or
    model is None in its place."""
    params = _resolve_params(name, provider, model_name, default_provider)
    statement = statements.RESOLVE_ACTIVE
    if version_number is not None:
        statement = statements.RESOLVE_NUMBER
        params["version_number"] = version_number
    row = await ex.fetch_one(statement, params)
    if row is None:
        return None
    return (
        _required(Prompt, "p_", row),
        _entity(PromptVersion, "v_", row),
        _entity(Model, "m_", row),
    )


async def resolve_label_run(
    ex: Executor,
    name: str,
    *,
    label: str,
    provider: ProviderName | None,
    model_name: str | None,
    default_provider: ProviderName,
) -> tuple[Prompt, PromptLabel | None, PromptVersion | None, Model | None] | None:
    """As ``resolve_run`` for the version label ``label`` points to, with the label's row
    (None if the prompt has no such label; a split label's version is None): one query."""
    params = _resolve_params(name, provider, model_name, default_provider) | {"label": label}
    row = await ex.fetch_one(statements.RESOLVE_LABEL, params)
    if row is None:
        return None
    found = None
    if row["l_label"] is not None:
        found = PromptLabel(**{key: row["l_" + column] for key, column in _ATTRIBUTES[PromptLabel]})
    return (
        _required(Prompt, "p_", row),
        found,
        _entity(PromptVersion, "v_", row),
        _entity(Model, "m_", row),
    )


def _resolve_params(
    name: str,
    provider: ProviderName | None,
    model_name: str | None,
    default_provider: ProviderName,
) -> dict[str, Any]:
    return {
        "name": name,
        "provider": None if provider is None else provider.value,
        "model_name": model_name,
        "default_provider": default_provider.value,
    }


async def get_execution(ex: Executor, execution_id: uuid.UUID) -> ExecutionWithContext | None:
    row = await ex.fetch_one(statements.EXECUTION_BY_ID, {"execution_id": execution_id})
    return _with_context(row)


async def get_execution_by_key(ex: Executor, key: str) -> ExecutionWithContext | None:
    return _with_context(await ex.fetch_one(statements.EXECUTION_BY_KEY, {"key": key}))


async def find_stale_running(
    ex: Executor, *, running: ExecutionStatus, started_before: datetime, limit: int
) -> list[Execution]:
    rows = await ex.fetch_all(
        statements.STALE_RUNNING,
        {"running": running, "started_before": started_before, "limit": limit},
    )
    return [_required(Execution, "", row) for row in rows]


# --- transitions ---------------------------------------------------------------------------


async def insert_execution(db: Database, values: dict[str, Any]) -> bool:
    """Insert the row (attribute names as keys), committed when this returns (with the
    rows of concurrent callers: group commit); False when its idempotency key is taken."""
    return await db.group(_insert_executions)(_columns(values))


async def _insert_executions(ex: Executor, rows: Sequence[dict[str, Any]]) -> list[bool]:
    statement = statements.insert_executions(ex.dialect.name, len(rows))
    found = await ex.fetch_all(statement, statements.batch_params(ex.dialect.name, rows))
    inserted = {row["id"] for row in found}
    return [row["id"] in inserted for row in rows]


async def claim(
    ex: Executor,
    execution_id: uuid.UUID,
    *,
    from_status: ExecutionStatus,
    to_status: ExecutionStatus,
    now: datetime,
) -> ExecutionWithContext | None:
    """``from_status`` → ``to_status`` if still so and due at ``now``, counting an attempt;
    with its prompt, version and model. None when it was not ours to take."""
    params = {
        "execution_id": execution_id,
        "from_status": from_status,
        "to_status": to_status,
        "now": now,
    }
    return _with_context(await ex.run(statements.claim(ex.dialect.name), params))


async def write_attempt(
    ex: Executor,
    execution_id: uuid.UUID,
    *,
    from_status: ExecutionStatus,
    attempt: int,
    values: dict[str, Any],
) -> bool:
    """Write a non-final outcome if attempt ``attempt`` still owns the row in ``from_status``
    (a worker presumed dead, whose row was recovered and re-run, overwrites nothing)."""
    columns = _columns(values)
    params = {"execution_id": execution_id, "from_status": from_status, "attempt": attempt}
    params |= {f"set_{name}": value for name, value in columns.items()}
    return await ex.fetch_value(statements.write_attempt(tuple(columns)), params) is not None


@dataclass(frozen=True, slots=True)
class RollupDelta:
    """What one execution reaching a final status adds to the rollup tables."""

    prompt_id: int
    hour: datetime
    counters: dict[str, int]  # execution_rollups (statements.ROLLUP_COUNTERS)
    sums: dict[str, Decimal]  # execution_rollups (statements.ROLLUP_SUMS)
    latency_bucket: int | None  # latency_rollups and latency_totals, when it has a latency
    model_id: int
    execution_mode: ExecutionMode
    status: ExecutionStatus
    totals: dict[str, int]  # execution_totals (tables.EXECUTION_TOTAL_COUNTERS)


@dataclass(frozen=True, slots=True)
class Finish:
    """One final outcome: the row as it will read (``statements.FINISH_COLUMNS``, by
    attribute name) if it is still in ``from_status`` (and on ``attempt``, when given)."""

    execution_id: uuid.UUID
    from_status: ExecutionStatus
    attempt: int | None
    values: dict[str, Any]
    delta: RollupDelta

    def params(self) -> dict[str, Any]:
        delta = self.delta
        params: dict[str, Any] = {
            "id": self.execution_id,
            "from_status": self.from_status,
            "attempt": self.attempt,
            **_columns(self.values),
            "prompt_id": delta.prompt_id,
            "model_id": delta.model_id,
            "execution_mode": delta.execution_mode,
            "hour": delta.hour,
            "bucket": delta.latency_bucket,
        }
        params |= {f"r_{name}": value for name, value in delta.counters.items()}
        params |= {f"r_{name}": value for name, value in delta.sums.items()}
        params |= {f"t_{name}": value for name, value in delta.totals.items()}
        return params


async def finish(db: Database, item: Finish) -> bool:
    """Write a final outcome and count it in every rollup, atomically, committed when this
    returns (with those of concurrent callers: group commit). True when written."""
    return await db.group(_finish_batch)(item)


async def _finish_batch(ex: Executor, items: Sequence[Finish]) -> list[bool]:
    params = [item.params() for item in items]
    dialect = ex.dialect.name
    steps = statements.finish(dialect)
    if len(steps) == 1:  # the whole batch in one statement
        found = await ex.fetch_all(steps[0], statements.batch_params(dialect, params))
        written = {row["id"] for row in found}
        return [item.execution_id in written for item in items]
    results = []
    async with ex.transaction():
        for one in params:
            found_one = await ex.run_steps(steps, statements.batch_params(dialect, [one]))
            results.append(found_one is not None)
    return results


async def mark_undispatched(
    ex: Executor,
    *,
    queued: ExecutionStatus,
    now: datetime,
    published_before: datetime,
    limit: int,
) -> list[uuid.UUID]:
    """Due ``queued`` rows whose last publication is older than ``published_before``,
    stamped as published ``now``."""
    rows = await ex.fetch_all(
        statements.MARK_UNDISPATCHED,
        {"queued": queued, "now": now, "published_before": published_before, "limit": limit},
    )
    return [row["id"] for row in rows]
