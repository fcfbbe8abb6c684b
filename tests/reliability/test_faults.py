"""Fault injection against the production topology, all real processes: ``promptledger serve``
(uvicorn) and ``promptledger worker`` (Celery) on PostgreSQL and a private Redis, calling the
stub provider in its own process. Each test injects its faults while traffic flows, then ends
with the one ledger invariant check (``invariants.check_ledger``).

The processes run with short timings (``StackConfig``: sweep every 0.5 s, recovery after 4 s,
provider timeout 2 s), so every recovery path completes within a test.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from tests.reliability.harness import (
    API_KEY,
    QUEUE,
    PrivatePostgres,
    RedisProcess,
    Stack,
    StackConfig,
    running_stack,
    wait_for,
)
from tests.reliability.invariants import (
    JOB_PROMPT,
    JOB_TEMPLATE,
    Api,
    History,
    LedgerReport,
    check_ledger,
    job,
)

from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.testing.stub_provider import stub_stats
from prompt_ledger.workers.celery_app import EXECUTE_TASK, create_celery

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

CONFIG = StackConfig()
WORKERS = 2


@pytest.fixture(scope="module")
def stack(
    ledger_url: str,
    reliability_redis: RedisProcess,
    stub_process: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Stack]:
    """One deployment for the module (start-up is the slow part); tests that kill parts of
    it get them back from the ``healthy`` fixture."""
    folder = tmp_path_factory.mktemp("faults")
    with running_stack(
        folder, ledger_url, reliability_redis.url(0), stub_process, config=CONFIG, workers=WORKERS
    ) as deployment:
        yield deployment


@pytest.fixture
def healthy(stack: Stack, reliability_redis: RedisProcess) -> Stack:
    """The module's deployment with Redis, serve and every worker up."""
    if not reliability_redis.running:
        reliability_redis.start()
    if stack.serve is None or not stack.serve.running:
        stack.start_serve()
    stack.start_workers(WORKERS - len(stack.live_workers))
    return stack


@pytest.fixture
def history(request: pytest.FixtureRequest) -> History:
    return History(request.node.name)


@pytest.fixture
def api(healthy: Stack, history: History) -> Iterator[Api]:
    client = Api(healthy.base_url, API_KEY, history)
    client.save(JOB_PROMPT, JOB_TEMPLATE)
    yield client
    client.close()


def check(stack: Stack, history: History) -> LedgerReport:
    return check_ledger(
        stack.database_url,
        history,
        stub_url=stack.stub_url,
        bound_s=CONFIG.settle_bound_s,
        max_attempts=CONFIG.max_attempts,
        logs=lambda: stack.logs().values(),
    )


def submit(api: Api, faults: str = "", *, key: str | None = None) -> str:
    return submit_job(api, faults, key=key)[0]


def submit_job(api: Api, faults: str = "", *, key: str | None = None) -> tuple[str, str]:
    """Submit one job; its execution id and its stub counter key."""
    variables = job(faults)
    r = api.execute(JOB_PROMPT, variables, idempotency_key=key)
    assert r is not None and r.status_code == 202, r.text if r is not None else "no answer"
    execution_id: str = r.json()["execution_id"]
    return execution_id, variables["k"]


def wait_for_calls(stub_url: str, keys: list[str], count: int) -> None:
    """Until the provider has received ``count`` calls for these jobs (they are then in
    flight, when the jobs carry a ``delay``)."""

    def calls() -> int:
        by_key = stub_stats(stub_url)["calls_by_key"]
        return sum(by_key.get(k, 0) for k in keys)

    wait_for(lambda: calls() >= count, f"{count} provider calls", 20)


def rows_with_status(database_url: str, status: str) -> int:
    engine = create_sync_engine(database_url)
    try:
        with engine.connect() as conn:
            count: int = conn.execute(
                sa.text("SELECT count(*) FROM executions WHERE status = :s"), {"s": status}
            ).scalar_one()
            return count
    finally:
        engine.dispose()


class Load:
    """Background traffic: async submits (some idempotent, each sent twice) and sync runs,
    from a few threads, until stopped. Every call lands in the history."""

    def __init__(self, api: Api, *, faults: str = "[[stub delay=0.4]]", threads: int = 3):
        self.api = api
        self.faults = faults
        self.threads = threads
        self.stop = threading.Event()
        self.pool = ThreadPoolExecutor(max_workers=threads)
        self.futures: list[Any] = []

    def _loop(self, n: int) -> None:
        rng = random.Random(n)
        while not self.stop.is_set():
            choice = rng.random()
            if choice < 0.6:
                self.api.execute(JOB_PROMPT, job(self.faults))
            elif choice < 0.85:
                key, variables = uuid.uuid4().hex, job(self.faults)
                for _ in range(2):  # a client retrying: one execution
                    self.api.execute(JOB_PROMPT, variables, idempotency_key=key)
            else:
                self.api.execute(JOB_PROMPT, job("[[stub delay=0.1]]"), sync=True)
            time.sleep(0.02)

    def __enter__(self) -> Load:
        self.futures = [self.pool.submit(self._loop, n) for n in range(self.threads)]
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for future in self.futures:
            future.result(timeout=60)
        self.pool.shutdown()


# --- workers ------------------------------------------------------------------------------


def test_workers_sigkilled_mid_call_are_recovered(
    healthy: Stack, api: Api, history: History
) -> None:
    ids, keys = zip(*(submit_job(api, "[[stub delay=1.5]]") for _ in range(20)), strict=True)
    wait_for_calls(healthy.stub_url, list(keys), 10)
    for worker in healthy.live_workers:
        worker.kill()
        history.fault(f"SIGKILL {worker.name} mid-call")
    healthy.start_worker()

    report = check(healthy, history)
    assert report.worker_lost >= 10  # the calls in flight were recovered by the sweeper
    assert report.statuses == {"succeeded": len(ids)}
    recovered = api.get(ids[0])
    assert recovered["attempts"] == 2
    assert recovered["response_text"].startswith("echo: job")


def test_rolling_restart_with_sigterm_under_load_loses_nothing(
    healthy: Stack, api: Api, history: History
) -> None:
    with Load(api):
        time.sleep(1.5)
        for old in list(healthy.live_workers):
            healthy.start_worker()  # the replacement is up before the old one goes
            took = old.terminate()
            history.fault(f"SIGTERM {old.name} under load (exited in {took:.1f}s)")
            assert old.proc is not None and old.proc.returncode == 0, old.output()[-2000:]
            time.sleep(1.0)
    report = check(healthy, history)
    assert report.accepted >= 30
    assert set(report.statuses) == {"succeeded"}
    # A warm shutdown drains its in-flight calls, so nothing should need recovery. Since
    # 0eacd74 (drain on worker_shutdown) a task claimed after the drain is rarer but still
    # seen: 1 run in 15 recovered 3 executions (docs/reliability.md), so report.worker_lost
    # is reported in the summary table rather than asserted to be 0.


# --- redis --------------------------------------------------------------------------------


def test_redis_restart_without_persistence_loses_no_execution(
    healthy: Stack, api: Api, history: History, reliability_redis: RedisProcess
) -> None:
    # Phase 1: executions queued in Redis, no worker running, Redis restarts empty.
    healthy.stop_workers()
    queued = [submit(api) for _ in range(15)]
    assert reliability_redis.client().llen(QUEUE) >= len(queued)
    with history.outage("Redis restarted empty while executions were queued"):
        reliability_redis.stop()
        during = [submit(api) for _ in range(2)]  # accepted: the row is the source of truth
        reliability_redis.start()
        assert reliability_redis.client().llen(QUEUE) == 0  # every message is gone
    healthy.start_workers(WORKERS)

    # Phase 2: executions running and queued behind them when Redis restarts again.
    running, keys = zip(*(submit_job(api, "[[stub delay=1]]") for _ in range(15)), strict=True)
    wait_for_calls(healthy.stub_url, list(keys), 5)
    with history.outage("Redis restarted empty while executions were running"):
        reliability_redis.restart(down_s=0.5)
    after = [submit(api) for _ in range(5)]

    report = check(healthy, history)
    assert report.accepted == len(queued) + len(during) + len(running) + len(after)
    assert set(report.statuses) == {"succeeded"}


# --- the API -------------------------------------------------------------------------------


def test_api_killed_between_commit_and_publish(
    healthy: Stack, api: Api, history: History, reliability_redis: RedisProcess
) -> None:
    """The API dies with rows committed whose ids never reached the queue: the restarted
    API's sweeper publishes them. Clients that got no answer retry with their key."""
    healthy.stop_workers()
    serve = healthy.serve
    assert serve is not None
    keys: list[tuple[str, dict[str, str], bool]] = []
    keys_lock = threading.Lock()
    stop = threading.Event()

    def burst(n: int) -> None:
        while not stop.is_set():
            sync = n == 0  # one thread runs slow sync executions
            variables = job("[[stub delay=3]]" if sync else "")
            key = uuid.uuid4().hex
            with keys_lock:
                keys.append((key, variables, sync))
            api.execute(JOB_PROMPT, variables, sync=sync, idempotency_key=key)

    with history.outage("API SIGKILLed mid-burst", api_down=True, grace_s=1.0):
        with ThreadPoolExecutor(max_workers=6) as pool:
            futures = [pool.submit(burst, n) for n in range(6)]
            wait_for(lambda: len(history.accepted()) >= 40, "40 accepted submits", 30)
            stop.set()  # the requests in flight now are the ones the kill cuts off
            serve.kill()
            for future in futures:
                future.result(timeout=60)
        # Whatever was published is dropped too: the ids "never reached the queue".
        reliability_redis.client().delete(QUEUE)
        queued = rows_with_status(healthy.database_url, "queued")
        assert queued >= 30
        healthy.start_serve()
        # The restarted API's sweeper publishes every one of them (no worker is running).
        wait_for(
            lambda: reliability_redis.client().llen(QUEUE) >= queued,
            "the sweeper to publish the orphaned rows",
            10 * CONFIG.sweep_interval_s + 5,
        )

    # An execution committed by the API but never published, from long ago.
    orphan = insert_unpublished_row(healthy.database_url)
    history.fault("queued row committed, never published (dispatched_at 1 h ago)")

    unanswered = {c.idempotency_key for c in history.calls if c.status is None}
    assert unanswered, "the kill should have cut some requests off"
    healthy.start_workers(WORKERS)
    # Clients retry what got no answer, with the same key: one execution each.
    with ThreadPoolExecutor(max_workers=8) as pool:
        for key, variables, sync in keys:
            if key in unanswered:
                pool.submit(api.execute, JOB_PROMPT, variables, sync=sync, idempotency_key=key)

    report = check(healthy, history)
    final = api.get(orphan)
    assert final["status"] == "succeeded"
    assert final["attempts"] == 1
    # Sync runs cut off by the kill are failed by recovery, never re-run.
    sync_keys = {key for key, _, sync in keys if sync}
    assert report.executions >= 40
    assert report.statuses.get("failed", 0) <= len(sync_keys)


def insert_unpublished_row(database_url: str) -> str:
    """Copy a finished job row as a new ``queued`` one whose only publication is an hour old
    (what the API leaves behind when it dies between COMMIT and publish)."""
    new_id = uuid.uuid4()
    k = uuid.uuid4().hex
    engine = create_sync_engine(database_url)
    old = datetime.now(UTC) - timedelta(hours=1)
    try:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO executions (id, prompt_id, prompt_version_id, model_id, "
                    "execution_mode, status, variables, rendered_prompt, params, params_dropped, "
                    "attempts, metadata, created_at, dispatched_at) "
                    "SELECT :id, prompt_id, prompt_version_id, model_id, 'async', 'queued', "
                    "variables, :rendered, params, params_dropped, 0, metadata, now(), :old "
                    "FROM executions WHERE rendered_prompt LIKE '%job%' LIMIT 1"
                ),
                {"id": new_id, "rendered": f"[[stub key={k}]] job {k}", "old": old},
            )
    finally:
        engine.dispose()
    return str(new_id)


# --- PostgreSQL ---------------------------------------------------------------------------


def test_postgres_stopped_and_started_while_workers_write(
    private_postgres: PrivatePostgres,
    reliability_redis: RedisProcess,
    stub_process: str,
    tmp_path: Path,
) -> None:
    """503 while the database is down (never another 5xx), consistent after."""
    database_url = private_postgres.create_database("promptledger")
    history = History("test_postgres_stopped_and_started_while_workers_write")
    with running_stack(
        tmp_path / "pg",
        database_url,
        reliability_redis.url(1),  # its own Redis db: the module's workers must not see it
        stub_process,
        config=CONFIG,
        workers=1,
    ) as stack:
        api = Api(stack.base_url, API_KEY, history, timeout_s=15)
        api.save(JOB_PROMPT, JOB_TEMPLATE)
        ids, keys = zip(*(submit_job(api, "[[stub delay=1.5]]") for _ in range(20)), strict=True)
        wait_for_calls(stub_process, list(keys), 10)
        statuses: list[int | None] = []
        with history.outage("PostgreSQL stopped (immediate) and started", grace_s=5.0):
            private_postgres.stop("immediate")
            for _ in range(5):
                r = api.execute(JOB_PROMPT, job())
                statuses.append(r.status_code if r is not None else None)
                ready = api.http.get("/health/ready")
                assert ready.status_code == 503
                health = api.http.get("/health", timeout=1)
                assert health.status_code == 200
                time.sleep(0.2)
            private_postgres.start()
        assert statuses == [503] * 5
        after = [submit(api) for _ in range(5)]
        report = check(stack, history)
        api.close()
    assert report.accepted == len(ids) + len(after)
    assert report.worker_lost >= 1  # results that could not be written were recovered
    assert set(report.statuses) == {"succeeded"}


# --- the provider --------------------------------------------------------------------------


def test_provider_hangs_resets_and_rate_limits_then_recovers(
    healthy: Stack, api: Api, history: History
) -> None:
    """Each async execution meets its fault on the first attempt(s), then the provider
    recovers; each sync one meets it once and is recorded failed."""
    faults = {  # name: (async directive, sync directive, error type, attempts to success)
        "hang": ("[[stub fault=hang fail=1]]", "[[stub fault=hang]]", "timeout", 2),
        "reset": ("[[stub fault=reset fail=2]]", "[[stub fault=reset]]", "provider_error", 3),
        "429": (
            "[[stub status=429 retry_after=1 fail=2]]",
            "[[stub status=429 retry_after=1]]",
            "rate_limited",
            3,
        ),
        "503": ("[[stub status=503 fail=3]]", "[[stub status=503]]", "provider_error", 4),
    }
    async_ids: dict[str, list[str]] = {}
    for name, (directive, _, _, _) in faults.items():
        history.fault(f"provider {name}")
        async_ids[name] = [submit(api, directive) for _ in range(5)]

    def run_sync(directive: str) -> dict[str, Any]:
        r = api.execute(JOB_PROMPT, job(directive), sync=True)
        assert r is not None and r.status_code == 200, r.text if r is not None else None
        execution: dict[str, Any] = r.json()
        return execution

    with ThreadPoolExecutor(max_workers=8) as pool:
        pending = {
            name: [pool.submit(run_sync, directive) for _ in range(2)]
            for name, (_, directive, _, _) in faults.items()
        }
        sync_results = {name: [f.result() for f in futures] for name, futures in pending.items()}
    report = check(healthy, history)
    for name, (_, _, error_type, attempts) in faults.items():
        for execution_id in async_ids[name]:
            e = api.get(execution_id)
            assert e["status"] == "succeeded", (name, e)
            assert e["attempts"] == attempts, (name, e)
        for e in sync_results[name]:
            assert e["status"] == "failed", (name, e)
            assert e["error"]["type"] == error_type, (name, e)
            assert e["attempts"] == 1
    # A hung call is given up at PROVIDER_TIMEOUT_S, not later.
    hang = sync_results["hang"][0]
    assert hang["telemetry"]["latency_ms"] < (CONFIG.provider_timeout_s + 1) * 1000
    assert report.retried >= 20


# --- the queue -----------------------------------------------------------------------------


def test_same_task_delivered_twice_runs_once(
    healthy: Stack, api: Api, history: History, reliability_redis: RedisProcess
) -> None:
    celery = create_celery(reliability_redis.url(0))

    def deliver_again(execution_id: str, times: int = 2) -> None:
        for _ in range(times):
            celery.send_task(EXECUTE_TASK, args=(execution_id,))

    try:
        queued = [submit(api, "[[stub delay=0.5]]") for _ in range(10)]
        for execution_id in queued:  # while queued or running
            deliver_again(execution_id)
        history.fault("each task delivered 3 times while queued/running")
        wait_for(
            lambda: all(api.get(i)["status"] == "succeeded" for i in queued), "all to finish", 30
        )
        for execution_id in queued:  # and after it finished
            deliver_again(execution_id)
        history.fault("each task delivered twice more after it finished")
        wait_for(lambda: reliability_redis.client().llen(QUEUE) == 0, "the queue to drain", 30)
        time.sleep(0.5)
    finally:
        celery.close()
    report = check(healthy, history)
    for execution_id in queued:
        e = api.get(execution_id)
        assert e["attempts"] == 1
        assert e["status"] == "succeeded"
    assert report.provider_calls == len(queued)
