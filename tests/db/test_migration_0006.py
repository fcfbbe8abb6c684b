"""Migration 0006 (time_to_first_token_ms) keeps every existing row readable, SQLite and
PostgreSQL; filled at the migration's own ``down_revision``."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import sqlalchemy as sa
from alembic import command
from tests.db.test_migration_0005 import _fill
from tests.db.test_migrations import fresh_postgres, fresh_sqlite, fresh_url

from prompt_ledger.db import migrate
from prompt_ledger.db.session import create_sync_engine

__all__ = ["fresh_postgres", "fresh_sqlite", "fresh_url"]  # fixtures, used by name


def _migration() -> ModuleType:
    path = migrate.MIGRATIONS_DIR / "versions" / "0006_time_to_first_token.py"
    spec = importlib.util.spec_from_file_location("migration_0006", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MIGRATION = _migration()


def test_existing_rows_read_after_upgrade(fresh_url: str) -> None:
    config = migrate.alembic_config(fresh_url)
    command.upgrade(config, MIGRATION.down_revision)
    engine = create_sync_engine(fresh_url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO models (provider, model_name, max_tokens, supports_streaming, "
                "is_active) VALUES ('openai', 'gpt-4o-mini', 16384, true, true)"
            )
        )
        _fill(conn)
    command.upgrade(config, MIGRATION.revision)

    with engine.connect() as conn:
        executions = conn.execute(
            sa.text(
                "SELECT status, response_text, prompt_tokens, response_tokens, latency_ms, "
                "time_to_first_token_ms FROM executions ORDER BY id"
            )
        ).all()
    engine.dispose()
    assert [tuple(row) for row in executions] == [
        ("succeeded", "hello", 3, 4, 50, None),
        ("queued", "hello", 3, 4, 50, None),
    ]

    command.downgrade(config, MIGRATION.down_revision)
    engine = create_sync_engine(fresh_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM executions")).scalar_one()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("executions")}
    engine.dispose()
    assert count == 2
    assert "time_to_first_token_ms" not in columns
