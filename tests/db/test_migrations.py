"""Migrations and the default-model seed, on both backends."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from prompt_ledger.db import migrate
from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.scripts.seed_models import seed

TABLES = {"prompts", "prompt_versions", "models", "executions", "prompt_events"}


def table_names(url: str) -> set[str]:
    engine = create_sync_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.fixture
def fresh_sqlite(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fresh.db'}"


@pytest.fixture
def fresh_postgres(postgres_url: str) -> str:
    """An empty database beside the session's one."""
    name = sa.make_url(postgres_url).database + "_fresh"
    admin = sa.create_engine(
        sa.make_url(postgres_url).set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"fresh_{request.param}")
    return url


def test_upgrade_creates_every_table_and_downgrade_removes_them(fresh_url: str) -> None:
    assert not migrate.is_current(fresh_url)
    migrate.upgrade(fresh_url)
    assert table_names(fresh_url) >= TABLES
    assert migrate.is_current(fresh_url)
    command.downgrade(migrate.alembic_config(fresh_url), "base")
    assert not (TABLES & table_names(fresh_url))
    migrate.upgrade(fresh_url)  # and back up: downgrade left nothing behind (enum types…)
    assert migrate.is_current(fresh_url)


def test_schema_matches_the_models(fresh_url: str) -> None:
    """Autogenerate finds nothing to do: migrations and tables.py agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from prompt_ledger.db.tables import Base

    migrate.upgrade(fresh_url)
    engine = create_sync_engine(fresh_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def test_seed_is_idempotent(fresh_url: str) -> None:
    migrate.upgrade(fresh_url)
    assert seed(fresh_url) == 3
    assert seed(fresh_url) == 0
    engine = create_sync_engine(fresh_url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT model_name, max_tokens, supports_streaming, is_active FROM models")
        ).all()
    engine.dispose()
    assert sorted(rows) == [
        ("gpt-4-turbo", 4096, True, True),
        ("gpt-4o", 16384, True, True),
        ("gpt-4o-mini", 16384, True, True),
    ]


def test_concurrent_processes_migrate_and_seed_once(fresh_url: str) -> None:
    """Several replicas starting at once: one migrates, the others wait and find it done."""
    code = (
        "import sys; from prompt_ledger.db import migrate;"
        "from prompt_ledger.scripts.seed_models import seed;"
        "migrate.upgrade(sys.argv[1]); print(seed(sys.argv[1]))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, fresh_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ},
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    assert sum(int(out.strip()) for out, _ in outputs) == 3
    assert migrate.is_current(fresh_url)


def test_seed_models_script_runs_as_module(fresh_sqlite: str) -> None:
    migrate.upgrade(fresh_sqlite)
    env = {**os.environ, "DATABASE_URL": fresh_sqlite}
    out = subprocess.run(
        [sys.executable, "-m", "prompt_ledger.scripts.seed_models"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "3 added" in out.stdout
