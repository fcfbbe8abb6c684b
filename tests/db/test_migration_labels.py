"""Migration 0003 (labels): a database filled at its ``down_revision`` upgrades with every
row reading as before, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory
from tests.db.test_migrations import fresh_postgres, fresh_sqlite, fresh_url  # noqa: F401

from prompt_ledger.db import migrate
from prompt_ledger.db.session import (
    create_engine,
    create_sync_engine,
    session_factory,
    unit_of_work,
)
from prompt_ledger.db.tables import (
    EventType,
    Execution,
    Prompt,
    PromptEvent,
    PromptVersion,
    VersionStatus,
)
from prompt_ledger.scripts.seed_models import seed
from prompt_ledger.services import labels

REVISION = "0003"
EXECUTION_ID = uuid.UUID("01a25000-0000-7000-8000-000000000001")
T0 = datetime(2026, 11, 1, 12, 0, 0, 123456, tzinfo=UTC)


def down_revision(url: str) -> str:
    script = ScriptDirectory.from_config(migrate.alembic_config(url)).get_revision(REVISION)
    assert script is not None and isinstance(script.down_revision, str)
    return script.down_revision


def fill(url: str) -> None:
    """Rows as the schema at ``down_revision`` holds them (reflected, not tables.py)."""
    engine = create_sync_engine(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    naive = T0.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T0
    prompts, versions = meta.tables["prompts"], meta.tables["prompt_versions"]
    events, executions = meta.tables["prompt_events"], meta.tables["executions"]
    with engine.begin() as conn:
        model_id = conn.scalar(sa.text("SELECT id FROM models WHERE model_name = 'gpt-4o-mini'"))
        pid = conn.execute(
            prompts.insert().values(
                name="old", mode="full", description="d", created_at=naive, updated_at=naive
            )
        ).inserted_primary_key[0]
        ids = []
        for n, status in ((1, "deprecated"), (2, "active")):
            ids.append(
                conn.execute(
                    versions.insert().values(
                        prompt_id=pid,
                        version_number=n,
                        template_source=f"v{n} {{{{ x }}}}",
                        checksum=f"{n:064d}",
                        variables=["x"],
                        status=status,
                        metadata={"n": n},
                        created_at=naive,
                    )
                ).inserted_primary_key[0]
            )
        conn.execute(prompts.update().values(active_version_id=ids[1]))
        rows: list[dict[str, Any]] = [
            {"type": "created", "version_number": None, "previous_version_number": None},
            {"type": "version_created", "version_number": 1, "previous_version_number": None},
            {"type": "activated", "version_number": 1, "previous_version_number": None},
            {"type": "version_created", "version_number": 2, "previous_version_number": None},
            {"type": "activated", "version_number": 2, "previous_version_number": 1},
        ]
        for row in rows:
            conn.execute(events.insert().values(prompt_id=pid, details={}, created_at=naive, **row))
        conn.execute(
            executions.insert().values(
                id=EXECUTION_ID.hex if engine.dialect.name == "sqlite" else EXECUTION_ID,
                prompt_id=pid,
                prompt_version_id=ids[0],
                model_id=model_id,
                execution_mode="sync",
                status="succeeded",
                variables={"x": "X"},
                rendered_prompt="v1 X",
                params={},
                params_dropped=[],
                response_text="echo: v1 X",
                attempts=1,
                metadata={},
                created_at=naive,
            )
        )
    engine.dispose()


async def read_back(url: str) -> None:
    engine = create_engine(url)
    try:
        async with unit_of_work(session_factory(engine)) as session:
            prompt = (await session.scalars(sa.select(Prompt))).one()
            assert (prompt.name, prompt.description, prompt.created_at) == ("old", "d", T0)
            versions = (
                await session.scalars(sa.select(PromptVersion).order_by(PromptVersion.id))
            ).all()
            assert [(v.version_number, v.status, v.metadata_) for v in versions] == [
                (1, VersionStatus.DEPRECATED, {"n": 1}),
                (2, VersionStatus.ACTIVE, {"n": 2}),
            ]
            assert prompt.active_version_id == versions[1].id
            events = (await session.scalars(sa.select(PromptEvent).order_by(PromptEvent.id))).all()
            assert [e.type for e in events] == [
                EventType.CREATED,
                EventType.VERSION_CREATED,
                EventType.ACTIVATED,
                EventType.VERSION_CREATED,
                EventType.ACTIVATED,
            ]
            execution = (await session.scalars(sa.select(Execution))).one()
            assert execution.id == EXECUTION_ID
            assert (execution.label, execution.subject) == (None, None)
            assert (execution.rendered_prompt, execution.created_at) == ("v1 X", T0)
            # every existing prompt has its ``active`` label (no backfill needed) …
            states = await labels.list_labels(session, "old")
            assert [(s.label, s.version_number, s.updated_at) for s in states] == [
                ("active", 2, T0)
            ]
        # … and takes new labels, logged with the new event type
        async with unit_of_work(session_factory(engine)) as session:
            await labels.set_label(
                session, "old", "ab", split=[labels.SplitEntry(1, 50), labels.SplitEntry(2, 50)]
            )
        async with unit_of_work(session_factory(engine)) as session:
            states = await labels.list_labels(session, "old")
            assert [s.label for s in states] == ["active", "ab"]
            last = (
                await session.scalars(sa.select(PromptEvent).order_by(PromptEvent.id.desc()))
            ).first()
            assert last is not None and last.type == EventType.LABEL_MOVED
    finally:
        await engine.dispose()


async def test_upgrade_keeps_every_row(fresh_url: str) -> None:  # noqa: F811
    config = migrate.alembic_config(fresh_url)
    previous = down_revision(fresh_url)
    command.upgrade(config, previous)
    seed(fresh_url)
    fill(fresh_url)
    command.upgrade(config, "head")  # read_back reads with the current models
    await read_back(fresh_url)


async def test_downgrade_then_upgrade_again(fresh_url: str) -> None:  # noqa: F811
    config = migrate.alembic_config(fresh_url)
    previous = down_revision(fresh_url)
    command.upgrade(config, previous)
    seed(fresh_url)
    fill(fresh_url)
    command.upgrade(config, "head")  # read_back reads with the current models
    await read_back(fresh_url)  # leaves a label and its label_moved event
    command.downgrade(config, previous)
    engine = create_sync_engine(fresh_url)
    with engine.connect() as conn:
        assert "prompt_labels" not in sa.inspect(conn).get_table_names()
        assert conn.scalar(sa.text("SELECT count(*) FROM prompt_events")) == 5
    engine.dispose()
    command.upgrade(config, "head")  # read_back reads with the current models
    await read_back(fresh_url)
