"""Engines and the unit of work.

The API and the in-process worker use async engines (aiosqlite / asyncpg or psycopg);
Alembic and other sync callers use the matching sync driver. Only ``unit_of_work``
(and the request dependency built on it) commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from prompt_ledger.db.executor import Executor, Statements, driver_supported
from prompt_ledger.db.group_commit import GroupCommit

Item = TypeVar("Item")
Result = TypeVar("Result")

_ASYNC_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "postgresql": "postgresql+asyncpg",
    "postgresql+psycopg2": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgres": "postgresql+asyncpg",
}
_SYNC_DRIVERS = {
    "sqlite+aiosqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",
    "postgresql+asyncpg": "postgresql+psycopg",
    "postgresql+psycopg2": "postgresql+psycopg",
}


def async_url(url: str) -> sa.URL:
    """The configured URL with the async driver this service runs on."""
    parsed = make_url(url)
    return parsed.set(drivername=_ASYNC_DRIVERS.get(parsed.drivername, parsed.drivername))


def sync_url(url: str) -> sa.URL:
    """The configured URL with a sync driver (migrations, scripts)."""
    parsed = make_url(url)
    return parsed.set(drivername=_SYNC_DRIVERS.get(parsed.drivername, parsed.drivername))


def is_sqlite(url: str | sa.URL) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


# Execution option of read-only SQLite sessions: a deferred BEGIN, so reads never queue
# behind (or hold up) writers.
_DEFERRED = "promptledger_deferred_begin"


def configure_sqlite(engine: sa.Engine) -> None:
    """WAL, foreign keys, and ``BEGIN IMMEDIATE``.

    SQLite has one writer. A deferred transaction that reads and then writes gets
    SQLITE_BUSY at once (ignoring busy_timeout) when another writer got there first;
    taking the write lock at BEGIN makes writers queue on busy_timeout instead.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy's BEGIN below drive transactions
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        deferred = conn.get_execution_options().get(_DEFERRED, False)
        conn.exec_driver_sql("BEGIN" if deferred else "BEGIN IMMEDIATE")


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    target = async_url(url)
    if is_sqlite(target):
        engine = create_async_engine(target)
        configure_sqlite(engine.sync_engine)
        return engine
    # Up to 2 x pool_size connections, all kept open: with an overflow half, every check-in
    # past pool_size closed its connection, so a loaded process reconnected (TCP, auth, a
    # new server process, statement cache lost) over and over. Same ceiling, no churn.
    return create_async_engine(target, pool_size=2 * pool_size, max_overflow=0, pool_pre_ping=False)


def create_sync_engine(url: str) -> sa.Engine:
    target = sync_url(url)
    engine = sa.create_engine(target)
    if is_sqlite(target):
        configure_sqlite(engine)
    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


@asynccontextmanager
async def unit_of_work(
    factory: async_sessionmaker[AsyncSession],
) -> AsyncIterator[AsyncSession]:
    """A session that commits when the block succeeds and rolls back when it raises."""
    async with factory() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


class Database:
    """The process's database: its engine and the three ways to work with it.

    * ``unit_of_work()``: an ORM session in one read-write transaction (registry writes:
      the prompt row is locked, so versions are decided one writer at a time);
    * ``snapshot()``: an ORM session whose reads all see one snapshot, without taking any
      write lock (analytics, /metrics: PostgreSQL ``REPEATABLE READ, READ ONLY``; SQLite a
      deferred transaction, which in WAL mode reads one snapshot);
    * ``ledger()``: an ``Executor`` for the execution ledger's statements, each committing
      by itself (PostgreSQL in autocommit, SQLite outside any transaction): no BEGIN/COMMIT
      round trips, and row or table locks last one statement;
    * ``group(write)``: the same, with concurrent writes of one kind sent as one batch.

    Every isolation, locking and dialect choice is made here, not by the callers.
    """

    def __init__(self, url: str, *, pool_size: int = 10) -> None:
        self.engine = create_engine(url, pool_size=pool_size)
        dialect = self.engine.dialect
        if not driver_supported(dialect):
            raise ValueError(f"unsupported database driver {dialect.driver!r}")
        self.sessions = session_factory(self.engine)
        if dialect.name == "postgresql":
            reading = self.engine.execution_options(
                isolation_level="REPEATABLE READ", postgresql_readonly=True
            )
            self._ledger_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            reading = self.engine.execution_options(**{_DEFERRED: True})
            self._ledger_engine = self.engine
        self._snapshots = session_factory(reading)
        self._statements = Statements(dialect)
        self._groups: dict[Callable[..., Any], GroupCommit[Any, Any]] = {}

    def unit_of_work(self) -> AbstractAsyncContextManager[AsyncSession]:
        return unit_of_work(self.sessions)

    @asynccontextmanager
    async def snapshot(self) -> AsyncIterator[AsyncSession]:
        async with self._snapshots() as session:
            try:
                yield session
            finally:
                await session.rollback()  # it only read

    @asynccontextmanager
    async def ledger(self) -> AsyncIterator[Executor]:
        async with self._ledger_engine.connect() as connection:
            raw = await connection.get_raw_connection()
            yield Executor(connection, raw.driver_connection, self._statements)

    def group(
        self, write: Callable[[Executor, Sequence[Item]], Awaitable[Sequence[Result]]]
    ) -> GroupCommit[Item, Result]:
        """Group commit for one kind of write (``db.group_commit``): concurrent calls of the
        returned writer leave together, as ``write(executor, items)`` on one connection."""
        group = self._groups.get(write)
        if group is None:

            async def write_batch(items: Sequence[Item]) -> Sequence[Result]:
                async with self.ledger() as ex:
                    return await write(ex, items)

            group = self._groups[write] = GroupCommit(write_batch)
        return group

    async def ping(self) -> None:
        """One round trip; raises what the driver raises when the database is down."""
        async with self.ledger() as ex:
            await ex.fetch_value(_PING, {})

    async def dispose(self) -> None:
        await self.engine.dispose()


_PING = sa.select(sa.literal(1))
