"""``db.direct``: hot-path statements on the driver connection, on both backends.

What must hold is that a direct statement is indistinguishable from SQLAlchemy running it:
the same values back (result processors: UUIDs, enums, timestamps, JSON), the same exception
types, and on SQLite the session's transaction (rolled back with it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from tests.conftest import clean_database

from prompt_ledger.db import direct
from prompt_ledger.db.session import (
    ConnectionBoundSessions,
    SessionFactory,
    create_engine,
    session_factory,
    unit_of_work,
)
from prompt_ledger.db.tables import Prompt, PromptMode

PROMPTS = Prompt.__table__
INSERT = sa.insert(PROMPTS).values(
    name=sa.bindparam("name"),
    mode=sa.bindparam("mode", type_=PROMPTS.c.mode.type),
    created_at=sa.bindparam("created_at", type_=PROMPTS.c.created_at.type),
    updated_at=sa.bindparam("created_at", type_=PROMPTS.c.updated_at.type),
)
SELECT = sa.select(PROMPTS.c.id, PROMPTS.c.mode, PROMPTS.c.created_at).where(
    PROMPTS.c.name == sa.bindparam("name")
)


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    clean_database(db_url)
    engine = create_engine(db_url, pool_size=2)
    yield engine
    await engine.dispose()


@pytest.fixture
def hot_sessions(engine: AsyncEngine) -> SessionFactory:
    """What ``Runtime.autocommit_sessions`` gives on each backend."""
    if engine.dialect.name == "postgresql":
        return ConnectionBoundSessions(engine)
    return session_factory(engine)


def row(name: str) -> dict[str, object]:
    return {
        "name": name,
        "mode": PromptMode.TRACKING,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    }


async def test_values_come_back_as_sqlalchemy_gives_them(hot_sessions: SessionFactory) -> None:
    values = row("direct-roundtrip")
    async with unit_of_work(hot_sessions) as session:
        assert direct.usable(session)
        await direct.fetchval(session, INSERT, values)
        found = await direct.fetchrow(session, SELECT, {"name": "direct-roundtrip"})
        by_sqlalchemy = (await session.execute(SELECT, {"name": "direct-roundtrip"})).one()

    assert found == dict(by_sqlalchemy._mapping)
    assert found["mode"] is PromptMode.TRACKING
    assert found["created_at"] == values["created_at"]  # an aware UTC datetime, as written


async def test_no_row_is_none(hot_sessions: SessionFactory) -> None:
    async with unit_of_work(hot_sessions) as session:
        assert await direct.fetchrow(session, SELECT, {"name": "nobody"}) is None
        assert await direct.fetchval(session, SELECT, {"name": "nobody"}) is None


async def test_driver_errors_are_sqlalchemy_errors(hot_sessions: SessionFactory) -> None:
    values = row("direct-duplicate")
    async with unit_of_work(hot_sessions) as session:
        await direct.fetchval(session, INSERT, values)
    with pytest.raises(sa.exc.IntegrityError):
        async with unit_of_work(hot_sessions) as session:
            await direct.fetchval(session, INSERT, values)
    # the connection is still good for the next unit of work
    async with unit_of_work(hot_sessions) as session:
        assert await direct.fetchval(session, SELECT, {"name": "direct-duplicate"}) is not None


async def test_on_sqlite_a_failed_unit_of_work_rolls_back_direct_writes(sqlite_url: str) -> None:
    clean_database(sqlite_url)
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    with pytest.raises(RuntimeError):
        async with unit_of_work(sessions) as session:
            await direct.fetchval(session, INSERT, row("direct-rolled-back"))
            raise RuntimeError("after the write")
    async with unit_of_work(sessions) as session:
        assert await direct.fetchval(session, SELECT, {"name": "direct-rolled-back"}) is None
    await engine.dispose()


async def test_only_autocommit_bound_postgres_sessions_are_direct(postgres_url: str) -> None:
    engine = create_engine(postgres_url, pool_size=2)
    async with AsyncSession(engine) as session:
        assert not direct.usable(session)  # transactional: SQLAlchemy keeps track of it
    async with ConnectionBoundSessions(engine)() as session:
        assert direct.usable(session)
    await engine.dispose()
