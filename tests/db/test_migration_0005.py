"""Migration 0005 (model prices, execution cost) keeps every existing row readable."""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime
from decimal import Decimal
from types import ModuleType

import sqlalchemy as sa
from alembic import command
from tests.db.test_migrations import fresh_postgres, fresh_sqlite, fresh_url

from prompt_ledger.db import migrate
from prompt_ledger.db.session import create_sync_engine

__all__ = ["fresh_postgres", "fresh_sqlite", "fresh_url"]  # fixtures, used by name


def _migration() -> ModuleType:
    path = migrate.MIGRATIONS_DIR / "versions" / "0005_model_pricing_and_cost.py"
    spec = importlib.util.spec_from_file_location("migration_0005", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


MIGRATION = _migration()
HOUR = datetime(2026, 11, 30, 10, tzinfo=UTC)


def _fill(conn: sa.Connection) -> None:
    """A prompt, a version, a finished and a queued execution and their rollup, as the
    schema before this migration holds them."""
    sqlite = conn.dialect.name == "sqlite"
    ts = (lambda d: d.replace(tzinfo=None)) if sqlite else (lambda d: d)
    model_id = conn.execute(
        sa.text("SELECT id FROM models WHERE model_name = 'gpt-4o-mini'")
    ).scalar_one()
    conn.execute(
        sa.text(
            "INSERT INTO prompts (id, name, mode, created_at, updated_at) "
            "VALUES (1, 'old', 'full', :t, :t)"
        ),
        {"t": ts(HOUR)},
    )
    conn.execute(
        sa.text(
            "INSERT INTO prompt_versions (id, prompt_id, version_number, template_source, "
            "checksum, variables, status, metadata, created_at) "
            "VALUES (1, 1, 1, 'Hi', :c, '[]', 'active', '{}', :t)"
        ),
        {"c": "0" * 64, "t": ts(HOUR)},
    )
    conn.execute(sa.text("UPDATE prompts SET active_version_id = 1"))
    for n, status in ((1, "succeeded"), (2, "queued")):
        conn.execute(
            sa.text(
                "INSERT INTO executions (id, prompt_id, prompt_version_id, model_id, "
                "execution_mode, status, variables, rendered_prompt, params, params_dropped, "
                "response_text, prompt_tokens, response_tokens, latency_ms, attempts, metadata, "
                "created_at) VALUES (:id, 1, 1, :m, 'sync', :s, '{}', 'Hi', '{}', '[]', "
                "'hello', 3, 4, 50, 1, '{}', :t)"
            ),
            {
                "id": f"00000000-0000-7000-8000-00000000000{n}",
                "m": model_id,
                "s": status,
                "t": ts(HOUR),
            },
        )
    conn.execute(
        sa.text(
            "INSERT INTO execution_rollups (hour, prompt_id, executions, succeeded, failed, "
            "latency_count, latency_sum, prompt_tokens, response_tokens) "
            "VALUES (:h, 1, 1, 1, 0, 1, 50, 3, 4)"
        ),
        {"h": ts(HOUR)},
    )


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
        model = conn.execute(
            sa.text(
                "SELECT model_name, max_tokens, supports_streaming, is_active, input_per_mtok, "
                "output_per_mtok, cached_input_per_mtok FROM models"
            )
        ).one()
        executions = conn.execute(
            sa.text(
                "SELECT status, response_text, prompt_tokens, response_tokens, latency_ms, "
                "cost_usd, price_source FROM executions ORDER BY id"
            )
        ).all()
        rollup = conn.execute(
            sa.text(
                "SELECT executions, prompt_tokens, response_tokens, cost_usd FROM execution_rollups"
            )
        ).one()
    engine.dispose()
    assert tuple(model) == ("gpt-4o-mini", 16384, True, True, None, None, None)
    assert [tuple(row) for row in executions] == [
        ("succeeded", "hello", 3, 4, 50, None, None),
        ("queued", "hello", 3, 4, 50, None, None),
    ]
    assert tuple(rollup[:3]) == (1, 3, 4)
    assert Decimal(str(rollup[3])) == 0

    # and back down: the old schema again, its rows intact
    command.downgrade(config, MIGRATION.down_revision)
    engine = create_sync_engine(fresh_url)
    with engine.connect() as conn:
        count = conn.execute(sa.text("SELECT count(*) FROM executions")).scalar_one()
        columns = {c["name"] for c in sa.inspect(conn).get_columns("executions")}
    engine.dispose()
    assert count == 2
    assert "cost_usd" not in columns
