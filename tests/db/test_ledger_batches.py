"""Group-committed ledger writes on every backend and driver: a batch of inserts and a batch
of finishes behave exactly like the same writes one by one (per-item answers, guards and
idempotency keys honoured, rollups counting only what was written)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa

from prompt_ledger.db import ledger
from prompt_ledger.db.session import Database
from prompt_ledger.db.tables import (
    Execution,
    ExecutionMode,
    ExecutionRollup,
    ExecutionStatus,
    LatencyTotal,
    Model,
    PromptMode,
    execution_totals,
)
from prompt_ledger.services import analytics, prompts

T0 = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)


async def running_row(db: Database, n: int, *, key: str | None = None) -> Execution:
    async with db.unit_of_work() as session:
        saved = await prompts.save_version(session, "batched", "hi", mode=PromptMode.FULL)
        model = await session.scalar(sa.select(Model).where(Model.model_name == "gpt-4o-mini"))
        assert model is not None
    return Execution(
        id=uuid.uuid4(),
        prompt_id=saved.prompt.id,
        prompt_version_id=saved.version.id,
        model_id=model.id,
        execution_mode=ExecutionMode.SYNC,
        status=ExecutionStatus.RUNNING,
        variables={"n": n},
        rendered_prompt=f"hi {n}",
        params={},
        params_dropped=[],
        attempts=1,
        idempotency_key=key,
        idempotency_fingerprint=None,
        metadata_={},
        created_at=T0 + timedelta(seconds=n),
        started_at=T0,
        not_before=None,
        dispatched_at=None,
    )


def values(row: Execution) -> dict[str, object]:
    return {attr.key: getattr(row, attr.key) for attr in Execution.__mapper__.column_attrs}


def finished(
    row: Execution, *, attempt: int, latency_ms: int, cost: Decimal | None = None
) -> ledger.Finish:
    row.status, row.latency_ms, row.response_text = ExecutionStatus.SUCCEEDED, latency_ms, "ok"
    row.prompt_tokens, row.response_tokens, row.completed_at = 3, 5, T0 + timedelta(minutes=1)
    row.cost_usd, row.price_source = cost, None if cost is None else "model"
    return ledger.Finish(
        execution_id=row.id,
        from_status=ExecutionStatus.RUNNING,
        attempt=attempt,
        values={name: getattr(row, name) for name in ledger.FINISH_ATTRIBUTES},
        delta=analytics.rollup_delta(row),
    )


async def test_concurrent_inserts_and_finishes_answer_each_caller(db: Database) -> None:
    rows = [await running_row(db, n) for n in range(20)]
    twins = [await running_row(db, 100 + n, key="same-key") for n in range(2)]
    inserted = await asyncio.gather(*(ledger.insert_execution(db, values(r)) for r in rows + twins))
    assert inserted[:20] == [True] * 20
    assert sorted(inserted[20:]) == [False, True]  # one key, one row

    stale = rows[0]  # its attempt 1 was recovered and re-run: a late result must not land
    costs = [None if i % 3 == 0 else Decimal(i).scaleb(-9) for i in range(len(rows))]
    items = [
        finished(r, attempt=2 if r is stale else 1, latency_ms=10 + i, cost=costs[i])
        for i, r in enumerate(rows)
    ]
    written = await asyncio.gather(*(ledger.finish(db, item) for item in items))
    assert written == [False] + [True] * 19

    async with db.snapshot() as session:
        rows_now = await session.execute(sa.select(Execution.id, Execution.status))
        statuses = {execution_id: status for execution_id, status in rows_now}
        hourly = await session.scalar(sa.select(sa.func.sum(ExecutionRollup.executions)))
        latencies = await session.scalar(sa.select(sa.func.sum(LatencyTotal.count)))
        totals = await session.scalar(sa.select(sa.func.sum(execution_totals.c.executions)))
        latency_sum = await session.scalar(sa.select(sa.func.sum(ExecutionRollup.latency_sum)))
        cost_rows = await session.execute(sa.select(Execution.id, Execution.cost_usd))
        written_costs = {execution_id: cost for execution_id, cost in cost_rows}
        cost_sum = await session.scalar(sa.select(ExecutionRollup.cost_usd))
    assert statuses[stale.id] == ExecutionStatus.RUNNING
    assert [written_costs[r.id] for r in rows[1:]] == costs[1:]  # each item's own value
    assert cost_sum == sum(c or 0 for c in costs[1:])
    assert sum(s == ExecutionStatus.SUCCEEDED for s in statuses.values()) == 19
    assert hourly == latencies == totals == 19  # counted once each, the stale one not at all
    assert latency_sum == sum(10 + i for i in range(1, 20))


async def test_a_finish_read_back_is_what_was_written(db: Database) -> None:
    row = await running_row(db, 1)
    assert await ledger.insert_execution(db, values(row))
    assert await ledger.finish(db, finished(row, attempt=1, latency_ms=250))
    assert not await ledger.finish(db, finished(row, attempt=1, latency_ms=250))  # once only
    async with db.ledger() as ex:
        found = await ledger.get_execution(ex, row.id)
    assert found is not None
    execution = found[0]
    assert (execution.status, execution.latency_ms, execution.response_text) == (
        ExecutionStatus.SUCCEEDED,
        250,
        "ok",
    )
    assert execution.completed_at == T0 + timedelta(minutes=1)
    assert execution.variables == {"n": 1}
