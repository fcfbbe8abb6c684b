"""Fixtures of the reliability suite: real processes only (see ``harness.py``).

The stub provider runs in its own process for the whole session, and so does a private
``redis-server`` (no persistence). Each test module gets its own database on the machine's
PostgreSQL; the test that stops PostgreSQL gets a private cluster instead.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.conftest import PG_ADMIN_URL, service_unavailable
from tests.reliability.harness import (
    PrivatePostgres,
    RedisProcess,
    Stack,
    StackConfig,
    create_database,
    drop_database,
    running_stack,
)
from tests.reliability.invariants import NOTES, REPORTS

from prompt_ledger.testing.stub_provider import serve_in_subprocess

# In the API server's environment: no template may ever read it back.
SANDBOX_CANARY = "pl-sandbox-canary-3b9e51f0"
# ``make reliability`` sets RELIABILITY_PROFILE=full: more fuzzing examples, the soak.
FULL = os.environ.get("RELIABILITY_PROFILE", "") == "full"


@pytest.fixture(scope="session")
def stub_process() -> Iterator[str]:
    """The stub provider in its own process: ``http://127.0.0.1:PORT/v1``."""
    with serve_in_subprocess() as url:
        yield url


@pytest.fixture(scope="session")
def reliability_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisProcess]:
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server", "not on PATH")
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(reliability_redis: RedisProcess) -> RedisProcess:
    """The private Redis, running and empty."""
    if not reliability_redis.running:
        reliability_redis.start()
    reliability_redis.client().flushall()
    return reliability_redis


@pytest.fixture(scope="module")
def ledger_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh database for the module on the machine's PostgreSQL, migrated and seeded."""
    module = Path(str(request.node.path)).stem.removeprefix("test_")
    name = f"pl_rel_{module}_{os.getpid()}"
    try:
        url = create_database(PG_ADMIN_URL, name)
    except sa.exc.OperationalError as exc:
        service_unavailable("PostgreSQL", exc.orig)
    yield url
    drop_database(PG_ADMIN_URL, name)


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster this suite may stop and start (never the machine's own)."""
    cluster = PrivatePostgres()
    why = cluster.why_unavailable()
    if why is not None:
        shutil.rmtree(cluster.root, ignore_errors=True)
        pytest.skip(f"cannot create a private PostgreSQL cluster: {why}")
    try:
        cluster.create()
        yield cluster
    finally:
        cluster.destroy()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The table docs/reliability.md quotes: one row per invariant check run."""
    write = terminalreporter.write_line
    if NOTES:
        terminalreporter.section("reliability: measurements")
        for text in NOTES:
            for line in text.strip("\n").splitlines():
                write(line)
    if not REPORTS:
        return
    terminalreporter.section("reliability: ledger invariants")
    header = (
        f"{'test':<44} {'faults':>6} {'execs':>6} {'lost':>5} {'dup':>4} {'stuck':>6} "
        f"{'over':>5} {'bad':>4} {'retried':>7} {'w_lost':>6} {'settle':>7}"
    )
    write(header)
    write("-" * len(header))
    for r in REPORTS:
        write(
            f"{r.test[:44]:<44} {len(r.faults):>6} {r.executions:>6} {len(r.lost):>5} "
            f"{len(r.duplicated):>4} {len(r.stuck):>6} {len(r.over_called):>5} "
            f"{len(r.bad_responses):>4} {r.retried:>7} {r.worker_lost:>6} {r.settle_s:>6.1f}s"
        )


@pytest.fixture(scope="session")
def api_server(stub_process: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One ``promptledger serve`` for the input tests (fuzzing, hostile input, templates):
    PostgreSQL, the in-process worker (no Redis), the stub provider in its own process."""
    name = f"pl_rel_api_{os.getpid()}"
    try:
        url = create_database(PG_ADMIN_URL, name)
    except sa.exc.OperationalError as exc:
        service_unavailable("PostgreSQL", exc.orig)
    # It lives until the end of the whole test session: a small idle pool.
    config = StackConfig(render_timeout_s=1.0, sweep_interval_s=5.0, database_pool_size=3)
    with running_stack(
        tmp_path_factory.mktemp("api"),
        url,
        None,
        stub_process,
        config=config,
        workers=0,
        extra_env={"PL_SANDBOX_CANARY": SANDBOX_CANARY},
    ) as stack:
        yield stack
    drop_database(PG_ADMIN_URL, name)
