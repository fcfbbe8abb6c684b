"""Migration 0004 (chat versions): a ledger filled before it reads right after it, on SQLite
and PostgreSQL. Filled at the migration's own ``down_revision`` (so re-chaining the
revisions keeps this test valid), with SQL against the tables as they were then."""

from __future__ import annotations

import hashlib
import importlib.util
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from alembic import command
from tests.conftest import API_KEY, OPENAI_KEY, running_app
from tests.db.test_migrations import fresh_postgres, fresh_sqlite  # noqa: F401 (fixtures)

from prompt_ledger.config import Settings
from prompt_ledger.db import migrate
from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.scripts.seed_models import seed

MIGRATION = migrate.MIGRATIONS_DIR / "versions" / "0004_chat_versions.py"
TEXT = "Hello {{ name }}!"
WHEN = datetime(2026, 11, 30, 12, 0, 0, 123456, tzinfo=UTC)


def _migration() -> Any:
    spec = importlib.util.spec_from_file_location("chat_versions_migration", MIGRATION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(params=["sqlite", "postgres"])
def old_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(f"fresh_{request.param}")
    return url


def fill_before(url: str) -> uuid.UUID:
    """A prompt with two versions (the second active) and a finished execution, written
    at the migration's down_revision."""
    engine = create_sync_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine, only=["prompts", "prompt_versions", "executions", "models"])
    prompts, versions = meta.tables["prompts"], meta.tables["prompt_versions"]
    executions, models = meta.tables["executions"], meta.tables["models"]
    execution_id = uuid.uuid4()
    naive = engine.dialect.name == "sqlite"
    when = WHEN.replace(tzinfo=None) if naive else WHEN
    with engine.begin() as conn:
        prompt_id = conn.execute(
            prompts.insert()
            .values(name="old", mode="full", description="d", created_at=when, updated_at=when)
            .returning(prompts.c.id)
        ).scalar_one()
        ids = []
        for number, text, status in ((1, "first", "deprecated"), (2, TEXT, "active")):
            ids.append(
                conn.execute(
                    versions.insert()
                    .values(
                        prompt_id=prompt_id,
                        version_number=number,
                        template_source=text,
                        checksum=hashlib.sha256(text.encode()).hexdigest(),
                        variables=["name"] if number == 2 else [],
                        status=status,
                        metadata={"v": number},
                        created_at=when,
                    )
                    .returning(versions.c.id)
                ).scalar_one()
            )
        conn.execute(prompts.update().values(active_version_id=ids[1]))
        model_id = conn.execute(
            sa.select(models.c.id).where(models.c.model_name == "gpt-4o-mini")
        ).scalar_one()
        conn.execute(
            executions.insert().values(
                id=execution_id.hex if naive else execution_id,  # SQLite: CHAR(32)
                prompt_id=prompt_id,
                prompt_version_id=ids[1],
                model_id=model_id,
                execution_mode="sync",
                status="succeeded",
                variables={"name": "Ada"},
                rendered_prompt="Hello Ada!",
                params={"temperature": 0.5},
                params_dropped=[],
                response_text="echo: Hello Ada!",
                prompt_tokens=2,
                response_tokens=3,
                latency_ms=12,
                attempts=1,
                metadata={},
                created_at=when,
                started_at=when,
                completed_at=when,
            )
        )
    engine.dispose()
    return execution_id


async def test_rows_written_before_read_right_after(
    old_url: str, tmp_path: Path, stub_url: str
) -> None:
    down = _migration().down_revision
    assert down is not None
    command.upgrade(migrate.alembic_config(old_url), down)
    seed(old_url)
    execution_id = fill_before(old_url)

    migrate.upgrade(old_url)
    assert migrate.is_current(old_url)

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=old_url,
        api_key=API_KEY,  # type: ignore[arg-type]
        openai_api_key=OPENAI_KEY,  # type: ignore[arg-type]
        openai_base_url=stub_url,
        promptledger_home=tmp_path,
        sweep_interval_s=3600,
    )
    async with running_app(settings) as (_, client):
        await check_reads(client, execution_id)


async def check_reads(client: httpx.AsyncClient, execution_id: uuid.UUID) -> None:
    prompt = (await client.get("/v1/prompts/old")).json()
    active = prompt["active_version"]
    assert active["version_number"] == 2
    assert active["type"] == "text"
    assert active["template_source"] == TEXT
    assert active["checksum"] == hashlib.sha256(TEXT.encode()).hexdigest()
    assert active["messages"] is None and active["config"] is None
    assert active["variables_schema"] is None
    assert active["metadata"] == {"v": 2}
    assert active["created_at"] == "2026-11-30T12:00:00.123456Z"
    versions = (await client.get("/v1/prompts/old/versions")).json()["items"]
    assert [(v["version_number"], v["status"], v["type"]) for v in versions] == [
        (2, "active", "text"),
        (1, "deprecated", "text"),
    ]

    execution = (await client.get(f"/v1/executions/{execution_id}")).json()
    assert execution["status"] == "succeeded"
    assert execution["rendered_prompt"] == "Hello Ada!"
    assert execution["rendered_messages"] is None
    assert execution["params"] == {"temperature": 0.5}
    assert execution["response_text"] == "echo: Hello Ada!"
    assert execution["version"] == {"number": 2, "checksum": active["checksum"]}

    # the old checksum is still this text's address: re-saving it creates nothing
    same = await client.put("/v1/prompts/old", json={"template_source": TEXT})
    assert same.status_code == 200 and same.json()["created"] is False
    # and the old version runs as before
    run = await client.post(
        "/v1/executions:run",
        json={"prompt_name": "old", "model_name": "gpt-4o-mini", "variables": {"name": "Bo"}},
    )
    assert run.status_code == 200, run.text
    assert run.json()["rendered_prompt"] == "Hello Bo!"
    assert run.json()["rendered_messages"] is None
