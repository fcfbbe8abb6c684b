"""``db.executor``: ledger statements on the driver connection, for all three drivers.

What must hold is that the executor is indistinguishable from SQLAlchemy running the same
statement: the same values back (result processors: UUIDs, enums, timestamps, JSON), the
same exception types (503 handling relies on them), all-or-nothing transactions, and a
connection that died is replaced, not handed out again.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from prompt_ledger.db.session import Database, create_sync_engine
from prompt_ledger.db.tables import Prompt, PromptMode

PROMPTS = Prompt.__table__
INSERT = sa.insert(PROMPTS).values(
    name=sa.bindparam("name"),
    mode=sa.bindparam("mode", type_=PROMPTS.c.mode.type),
    description=sa.bindparam("description"),
    created_at=sa.bindparam("created_at", type_=PROMPTS.c.created_at.type),
    updated_at=sa.bindparam("created_at", type_=PROMPTS.c.updated_at.type),
)
SELECT = sa.select(PROMPTS.c.id, PROMPTS.c.mode, PROMPTS.c.created_at).where(
    PROMPTS.c.name == sa.bindparam("name")
)
# a statement with a value written into it and a JSON result column
FIXED = sa.select(
    sa.literal(PromptMode.FULL, type_=PROMPTS.c.mode.type).label("mode"),
    sa.literal({"a": [1, 2]}, type_=sa.JSON).label("doc"),
    sa.literal(uuid.UUID(int=7), type_=sa.Uuid).label("uid"),
)


def row(name: str) -> dict[str, object]:
    return {
        "name": name,
        "mode": PromptMode.TRACKING,
        "description": None,
        "created_at": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
    }


async def test_values_come_back_as_sqlalchemy_gives_them(db: Database) -> None:
    values = row("roundtrip")
    async with db.ledger() as ex:
        await ex.fetch_value(INSERT, values)
        found = await ex.fetch_one(SELECT, {"name": "roundtrip"})
    async with db.snapshot() as session:
        by_sqlalchemy = (await session.execute(SELECT, {"name": "roundtrip"})).one()
    assert found == dict(by_sqlalchemy._mapping)
    assert found["mode"] is PromptMode.TRACKING
    assert found["created_at"] == values["created_at"]  # an aware UTC datetime, as written


async def test_fixed_values_and_result_types(db: Database) -> None:
    async with db.ledger() as ex:
        found = await ex.fetch_one(FIXED, {})
    async with db.snapshot() as session:
        assert found == dict((await session.execute(FIXED)).one()._mapping)
    assert found == {"mode": PromptMode.FULL, "doc": {"a": [1, 2]}, "uid": uuid.UUID(int=7)}


async def test_no_row_is_none(db: Database) -> None:
    async with db.ledger() as ex:
        assert await ex.fetch_one(SELECT, {"name": "nobody"}) is None
        assert await ex.fetch_value(SELECT, {"name": "nobody"}) is None
        assert await ex.fetch_all(SELECT, {"name": "nobody"}) == []


async def test_driver_errors_are_sqlalchemy_errors(db: Database) -> None:
    values = row("duplicate")
    async with db.ledger() as ex:
        await ex.fetch_value(INSERT, values)
        with pytest.raises(sa.exc.IntegrityError):
            await ex.fetch_value(INSERT, values)
        # the connection is still good after the error
        assert await ex.fetch_value(SELECT, {"name": "duplicate"}) is not None


async def test_each_statement_commits_by_itself(db: Database) -> None:
    async with db.ledger() as ex:
        await ex.fetch_value(INSERT, row("autocommitted"))
        async with db.ledger() as other:  # another connection sees it at once
            assert await other.fetch_value(SELECT, {"name": "autocommitted"}) is not None


async def test_a_failed_transaction_writes_nothing(db: Database) -> None:
    async with db.ledger() as ex:
        with pytest.raises(sa.exc.IntegrityError):
            async with ex.transaction():
                await ex.fetch_value(INSERT, row("rolled-back"))
                await ex.fetch_value(INSERT, row("rolled-back"))  # unique name: fails
        assert await ex.fetch_value(SELECT, {"name": "rolled-back"}) is None
        async with ex.transaction():
            await ex.fetch_value(INSERT, row("committed"))
        assert await ex.fetch_value(SELECT, {"name": "committed"}) is not None


async def test_steps_stop_at_the_first_without_a_row(db: Database) -> None:
    async with db.ledger() as ex:
        await ex.fetch_value(INSERT, row("first"))
        missing = {"name": "nobody", "mode": PromptMode.FULL}
        assert await ex.run([SELECT, INSERT], {**row("second"), **missing}) is None
        assert await ex.fetch_value(SELECT, {"name": "second"}) is None  # never ran
        found = await ex.run([SELECT], {"name": "first"})
        assert found is not None and found["mode"] is PromptMode.TRACKING


@pytest.mark.parametrize("driver", ["postgres", "psycopg"])
async def test_a_killed_connection_is_a_503_error_and_is_replaced(
    request: pytest.FixtureRequest, driver: str
) -> None:
    url: str = request.getfixturevalue(f"{driver}_url")
    db = Database(url, pool_size=1)
    try:
        async with db.ledger() as ex:
            pid = await ex.fetch_value(sa.select(sa.func.pg_backend_pid()), {})
        admin = create_sync_engine(url)
        with admin.connect() as conn:
            conn.execute(sa.select(sa.func.pg_terminate_backend(pid)))
        admin.dispose()
        # the pool hands the same connection out again (it does not ping): dead
        with pytest.raises(sa.exc.DBAPIError) as raised:
            async with db.ledger() as ex:
                await ex.fetch_value(SELECT, {"name": "x"})
        assert isinstance(raised.value, sa.exc.OperationalError)
        assert raised.value.connection_invalidated
        async with db.ledger() as ex:  # a fresh connection replaces the dead one
            assert await ex.fetch_value(SELECT, {"name": "x"}) is None
    finally:
        await db.dispose()
