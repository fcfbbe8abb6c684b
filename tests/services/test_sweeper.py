"""Recovery: rows stuck running and queued rows nobody picked up (SPEC §2, §7)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from tests.api.test_executions import RUN, SUBMIT, body, save, wait_done

from prompt_ledger.db import ledger
from prompt_ledger.db.tables import Execution, ExecutionStatus, utcnow
from prompt_ledger.services import analytics, executions
from prompt_ledger.services.executions import Runtime
from prompt_ledger.testing.stub_provider import stub_stats


@dataclass
class Hold:
    """A queue that keeps what is published, so a test decides when (and if) it runs."""

    published: list[uuid.UUID] = field(default_factory=list)

    async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        self.published.append(execution_id)


@pytest.fixture
async def held(
    app_and_client: tuple[FastAPI, httpx.AsyncClient],
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, Hold]]:
    app, client = app_and_client
    runtime: Runtime = app.state.promptledger.runtime
    hold = Hold()
    real, runtime.dispatcher = runtime.dispatcher, hold
    yield runtime, client, hold
    runtime.dispatcher = real


async def set_row(runtime: Runtime, execution_id: str, **values: object) -> None:
    async with runtime.db.unit_of_work() as session:
        await session.execute(
            sa.update(Execution).where(Execution.id == uuid.UUID(execution_id)).values(**values)
        )


def later(runtime: Runtime) -> object:
    return utcnow() + timedelta(seconds=runtime.settings.recovery_timeout_s + 1)


class TestStaleRunning:
    async def test_async_with_attempts_left_is_requeued_and_runs(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold], stub_url: str
    ) -> None:
        runtime, client, _ = held
        await save(client, "p", "hi")
        eid = (await client.post(SUBMIT, json=body())).json()["execution_id"]
        await set_row(runtime, eid, status="running", attempts=1, started_at=utcnow())
        published = await executions.sweep(runtime, now=later(runtime))
        assert published == [uuid.UUID(eid)]
        e = (await client.get(f"/v1/executions/{eid}")).json()
        assert e["status"] == "queued"
        assert e["error"]["type"] == "worker_lost"
        assert await executions.execute_queued(runtime, uuid.UUID(eid)) == "succeeded"
        e = (await client.get(f"/v1/executions/{eid}")).json()
        assert e["attempts"] == 2
        assert e["error"] is None
        assert stub_stats(stub_url)["calls"] == 1

    async def test_attempts_used_up_fails_with_worker_lost(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold]
    ) -> None:
        runtime, client, _ = held
        await save(client, "p", "hi")
        eid = (await client.post(SUBMIT, json=body())).json()["execution_id"]
        await set_row(
            runtime, eid, status="running", attempts=runtime.max_attempts, started_at=utcnow()
        )
        assert await executions.sweep(runtime, now=later(runtime)) == []
        e = (await client.get(f"/v1/executions/{eid}")).json()
        assert e["status"] == "failed"
        assert e["error"]["type"] == "worker_lost"
        assert e["completed_at"] is not None

    async def test_sync_run_is_failed_not_rerun(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold], stub_url: str
    ) -> None:
        runtime, client, _ = held
        await save(client, "p", "hi")
        eid = (await client.post(RUN, json=body())).json()["id"]
        await set_row(runtime, eid, status="running", completed_at=None)
        assert await executions.sweep(runtime, now=later(runtime)) == []
        e = (await client.get(f"/v1/executions/{eid}")).json()
        assert e["status"] == "failed"
        assert e["error"]["type"] == "worker_lost"
        assert stub_stats(stub_url)["calls"] == 1

    async def test_recent_running_row_is_left_alone(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold]
    ) -> None:
        runtime, client, _ = held
        await save(client, "p", "hi")
        eid = (await client.post(SUBMIT, json=body())).json()["execution_id"]
        await set_row(runtime, eid, status="running", attempts=1, started_at=utcnow())
        assert await executions.sweep(runtime) == []
        assert (await client.get(f"/v1/executions/{eid}")).json()["status"] == "running"

    async def test_late_result_of_a_recovered_attempt_is_discarded(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold]
    ) -> None:
        """A worker presumed dead that answers late must not overwrite the newer attempt."""
        runtime, client, _ = held
        await save(client, "p", "hi")
        eid = uuid.UUID((await client.post(SUBMIT, json=body())).json()["execution_id"])
        await set_row(runtime, str(eid), status="running", attempts=1, started_at=utcnow())
        await executions.sweep(runtime, now=later(runtime))
        assert await executions.execute_queued(runtime, eid) == "succeeded"  # attempt 2
        async with runtime.db.ledger() as ex:
            written = await ledger.write_attempt(
                ex,
                eid,
                from_status=ExecutionStatus.RUNNING,
                attempt=1,
                values={"status": ExecutionStatus.QUEUED, "error_type": "timeout"},
            )
            assert not written
            found = await ledger.get_execution(ex, eid)
            assert found is not None
            late = found[0]
            late.attempts, late.status, late.latency_ms = 1, ExecutionStatus.FAILED, 5
            finished = await ledger.finish(
                runtime.db,
                ledger.Finish(
                    execution_id=eid,
                    from_status=ExecutionStatus.RUNNING,
                    attempt=1,
                    values={name: getattr(late, name) for name in ledger.FINISH_ATTRIBUTES},
                    delta=analytics.rollup_delta(late),
                ),
            )
            assert not finished
        assert (await client.get(f"/v1/executions/{eid}")).json()["status"] == "succeeded"


class TestUndispatchedQueued:
    async def test_lost_publication_is_republished_once_per_interval(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold]
    ) -> None:
        runtime, client, hold = held
        await save(client, "p", "hi")
        eid = (await client.post(SUBMIT, json=body())).json()["execution_id"]
        assert hold.published == [uuid.UUID(eid)]
        assert await executions.sweep(runtime) == []  # published just now: not yet
        soon = utcnow() + timedelta(seconds=runtime.settings.sweep_interval_s + 1)
        assert await executions.sweep(runtime, now=soon) == [uuid.UUID(eid)]
        assert await executions.sweep(runtime, now=soon) == []  # stamped: not twice

    async def test_retry_not_yet_due_is_not_republished(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold]
    ) -> None:
        runtime, client, _ = held
        await save(client, "p", "hi")
        eid = (await client.post(SUBMIT, json=body())).json()["execution_id"]
        soon = utcnow() + timedelta(seconds=runtime.settings.sweep_interval_s + 1)
        await set_row(runtime, eid, not_before=soon + timedelta(hours=1))
        assert await executions.sweep(runtime, now=soon) == []
        assert await executions.execute_queued(runtime, uuid.UUID(eid)) is None  # not due

    async def test_republished_row_runs_once_even_if_delivered_twice(
        self, held: tuple[Runtime, httpx.AsyncClient, Hold], stub_url: str
    ) -> None:
        runtime, client, _ = held
        await save(client, "p", "hi")
        eid = uuid.UUID((await client.post(SUBMIT, json=body())).json()["execution_id"])
        results = [await executions.execute_queued(runtime, eid) for _ in range(3)]
        assert results == ["succeeded", None, None]
        assert stub_stats(stub_url)["calls"] == 1


async def test_in_process_sweeper_loop_recovers_on_its_own(settings: object, stub_url: str) -> None:
    """The sweeper started by the app's lifespan runs without being called."""
    from tests.conftest import running_app

    fast = settings.model_copy(  # type: ignore[attr-defined]
        update={"sweep_interval_s": 0.1, "recovery_timeout_s": 0.2}
    )
    async with running_app(fast) as (app, client):
        runtime: Runtime = app.state.promptledger.runtime
        await save(client, "p", "hi")
        eid = (await client.post(SUBMIT, json=body())).json()["execution_id"]
        await wait_done(client, eid)
        await set_row(
            runtime, eid, status="running", attempts=1, started_at=utcnow(), completed_at=None
        )
        e = await wait_done(client, eid, timeout_s=10)
        assert e["status"] == "succeeded"
        assert e["attempts"] == 2
