"""Shared fixtures: one database per backend, an app per test, real services only.

PostgreSQL and Redis tests skip with a message when the service is not reachable, unless
PROMPTLEDGER_REQUIRE_SERVICES=1 (set by CI), which turns that skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI

from prompt_ledger.api.app import create_app
from prompt_ledger.config import Settings
from prompt_ledger.db import migrate
from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.db.tables import Base
from prompt_ledger.scripts.seed_models import seed

pytest_plugins = ["tests.fixtures.stub_server"]

API_KEY = "pl_test_key_4f9c2b7e1d"
OPENAI_KEY = "sk-test-provider-key-77aa01"
PG_ADMIN_URL = os.environ.get(
    "PROMPTLEDGER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRE_SERVICES = os.environ.get("PROMPTLEDGER_REQUIRE_SERVICES") == "1"


def service_unavailable(what: str, why: object) -> None:
    message = f"{what} not reachable ({why}); set PROMPTLEDGER_TEST_PG or start it"
    if REQUIRE_SERVICES:
        pytest.fail(f"{message} — PROMPTLEDGER_REQUIRE_SERVICES=1 makes this a failure")
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throw-away database on the local PostgreSQL, migrated to head."""
    name = f"pl_test_{os.getpid()}"
    admin = sa.create_engine(
        sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        service_unavailable("PostgreSQL", exc.orig)
    url = str(sa.make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False))
    migrate.upgrade(url)
    seed(url)
    yield url
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("sqlite") / "promptledger.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    seed(url)
    return url


@pytest.fixture(scope="session")
def psycopg_url(postgres_url: str) -> str:
    """The same database through the other documented driver (SPEC §2, §12)."""
    url = sa.make_url(postgres_url).set(drivername="postgresql+psycopg")
    return url.render_as_string(hide_password=False)


@pytest.fixture(scope="session", params=["sqlite", "postgres", "psycopg"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Every test that takes this runs once per backend and driver: SQLite (aiosqlite),
    PostgreSQL through ``postgresql://`` (asyncpg) and ``postgresql+psycopg://``."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def clean_database(url: str) -> None:
    """Empty every table but the seeded models (tests commit, like the service does)."""
    engine = create_sync_engine(url)
    tables = [t for t in reversed(Base.metadata.sorted_tables) if t.name != "models"]
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            conn.execute(sa.text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            conn.execute(sa.text("UPDATE prompts SET active_version_id = NULL"))
            for table in tables:
                conn.execute(table.delete())
    engine.dispose()


@pytest.fixture
def settings(db_url: str, tmp_path: Path, stub_url: str) -> Iterator[Settings]:
    """Settings for one test: its backend, the stub provider, short retry delays.

    The background sweeper is slowed right down; sweeper tests call ``sweep`` themselves.
    """
    yield Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        api_key=API_KEY,  # type: ignore[arg-type]
        openai_api_key=OPENAI_KEY,  # type: ignore[arg-type]
        openai_base_url=stub_url,
        provider_timeout_s=2,
        execution_retry_delays=[0.05, 0.1, 0.1],  # type: ignore[arg-type]
        promptledger_home=tmp_path,
        render_timeout_s=2.0,  # generous: a loaded 2-core CI box must not time out plain renders
        sweep_interval_s=3600,
    )
    clean_database(db_url)


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app with its lifespan (worker, sweeper) running, and an authenticated client."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://testserver", headers={"X-API-Key": API_KEY}
        ) as http:
            yield app, http


@pytest.fixture
async def app_and_client(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    async with running_app(settings) as pair:
        yield pair


@pytest.fixture
def client(app_and_client: tuple[FastAPI, httpx.AsyncClient]) -> httpx.AsyncClient:
    return app_and_client[1]
