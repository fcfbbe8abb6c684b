"""The one way ledger statements run: on the driver connection, for every supported driver.

Profiles showed SQLAlchemy's per-statement machinery (execution context, parameter and
result objects, the greenlet hop of its async adaption) costing more CPU than the driver and
the database together (0.12-0.29 ms a statement against 0.01-0.04 ms for the driver's own
call). The ledger's statements are few and fixed (``db.statements``), so each is worked out
once per dialect with SQLAlchemy's public compiler API and then handed to the driver:

* the SQL text is SQLAlchemy's (``statement.compile(dialect=...)``), built from the tables;
* parameters go through each bind's type processor (``TypeEngine.bind_processor`` of its
  ``dialect_impl``): JSON, enums, UUIDs and UTC timestamps are stored as SQLAlchemy would;
* result columns go through the same types' ``result_processor``;
* the driver prepares and caches the statement itself (asyncpg's statement cache, psycopg's
  automatic prepare after a few executions, sqlite3's statement cache);
* driver errors are raised as SQLAlchemy's ``DBAPIError`` subclasses, after invalidating a
  connection that died, so error handlers (503 when the database is down) see one type.

A connection comes from the engine's pool (``db.session.Database.ledger``). Each statement
commits by itself (PostgreSQL in autocommit; SQLite without an open transaction) unless it
runs inside ``Executor.transaction()``, which the few multi-statement steps use.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, cast

import asyncpg  # type: ignore[import-untyped]
import psycopg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

_Processor = Callable[[Any], Any] | None


class Prepared:
    """A statement's SQL for one dialect, how to turn a parameter mapping into the driver's
    arguments, and how to read its result columns: worked out once."""

    __slots__ = ("_binds", "_fixed", "_positional", "columns", "sql")

    def __init__(self, statement: sa.Executable, dialect: sa.Dialect) -> None:
        assert isinstance(statement, sa.ClauseElement)
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, sa.sql.compiler.SQLCompiler)
        self.sql: str = compiled.string
        binds = compiled.binds
        order = compiled.positiontup
        self._positional = order is not None
        names = list(order) if order is not None else list(binds)
        self._binds: list[tuple[str, _Processor]] = [
            (name, binds[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in names
        ]
        # values written into the statement itself (``status == RUNNING``), not passed
        self._fixed: dict[str, Any] = {
            name: bind.effective_value for name, bind in binds.items() if not bind.required
        }
        # what the database sends back: a SELECT's columns; a DML statement's RETURNING,
        # including one the compiler adds itself (PostgreSQL returns a new primary key)
        returned: Sequence[Any]
        if compiled.isinsert or compiled.isupdate or compiled.isdelete:
            returned = compiled.effective_returning or ()
        else:
            returned = list(cast(sa.ReturnsRows, statement).exported_columns)
        self.columns: list[tuple[str, _Processor]] = [
            (str(column.key), column.type.dialect_impl(dialect).result_processor(dialect, None))
            for column in returned
        ]

    def args(self, params: Mapping[str, Any]) -> list[Any] | dict[str, Any]:
        values = []
        for name, process in self._binds:
            value = params[name] if name in params else self._fixed[name]
            values.append(value if process is None else process(value))
        if self._positional:
            return values
        return {name: value for (name, _), value in zip(self._binds, values, strict=True)}

    def row(self, record: Sequence[Any]) -> dict[str, Any]:
        """A fetched record as ``{column key: processed value}``."""
        return {
            key: value if process is None or value is None else process(value)
            for (key, process), value in zip(self.columns, record, strict=True)
        }


class _Driver:
    """What the executor needs from one DBAPI driver's native async connection. All three
    take transaction control as plain SQL (their connections are in autocommit here)."""

    begin_sql = "BEGIN"

    async def fetch(self, raw: Any, sql: str, args: Any) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    def error(self, exc: Exception) -> type[sa.exc.DBAPIError] | None:
        """The SQLAlchemy error class for a driver exception; None when it is not one."""
        raise NotImplementedError

    def is_closed(self, raw: Any) -> bool:
        return False

    async def begin(self, raw: Any) -> None:
        await raw.execute(self.begin_sql)

    async def commit(self, raw: Any) -> None:
        await raw.execute("COMMIT")

    async def rollback(self, raw: Any) -> None:
        await raw.execute("ROLLBACK")


class _Asyncpg(_Driver):
    async def fetch(self, raw: Any, sql: str, args: Any) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await raw.fetch(sql, *args)
        return rows

    def error(self, exc: Exception) -> type[sa.exc.DBAPIError] | None:
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return sa.exc.IntegrityError
        if isinstance(exc, asyncpg.PostgresConnectionError | asyncpg.InterfaceError | OSError):
            return sa.exc.OperationalError
        if isinstance(exc, asyncpg.PostgresError):
            return sa.exc.DBAPIError
        return None

    def is_closed(self, raw: Any) -> bool:
        return bool(raw.is_closed())


class _Psycopg(_Driver):
    async def fetch(self, raw: Any, sql: str, args: Any) -> Sequence[Sequence[Any]]:
        async with raw.cursor() as cursor:
            await cursor.execute(sql, args)
            if cursor.description is None:
                return []
            rows: Sequence[Sequence[Any]] = await cursor.fetchall()
            return rows

    def error(self, exc: Exception) -> type[sa.exc.DBAPIError] | None:
        if isinstance(exc, psycopg.IntegrityError):
            return sa.exc.IntegrityError
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError):
            return sa.exc.OperationalError
        if isinstance(exc, psycopg.Error):
            return sa.exc.DBAPIError
        return None

    def is_closed(self, raw: Any) -> bool:
        return bool(raw.closed or raw.broken)


class _Aiosqlite(_Driver):
    # the write lock at BEGIN, as every SQLite write transaction here takes it (db.session)
    begin_sql = "BEGIN IMMEDIATE"

    async def fetch(self, raw: Any, sql: str, args: Any) -> Sequence[Sequence[Any]]:
        rows: Sequence[Sequence[Any]] = await raw.execute_fetchall(sql, args)
        return rows

    def error(self, exc: Exception) -> type[sa.exc.DBAPIError] | None:
        if isinstance(exc, sqlite3.IntegrityError):
            return sa.exc.IntegrityError
        if isinstance(exc, sqlite3.OperationalError):
            return sa.exc.OperationalError
        if isinstance(exc, sqlite3.Error):
            return sa.exc.DBAPIError
        return None


_DRIVERS: dict[str, _Driver] = {
    "asyncpg": _Asyncpg(),
    "psycopg": _Psycopg(),
    "aiosqlite": _Aiosqlite(),
}


def driver_supported(dialect: sa.Dialect) -> bool:
    return dialect.driver in _DRIVERS


class Statements:
    """The compiled forms of the statements one process runs, per dialect (a statement is
    built once, at import, so its identity is its key)."""

    def __init__(self, dialect: sa.Dialect) -> None:
        self.dialect = dialect
        self._prepared: dict[int, tuple[sa.Executable, Prepared]] = {}

    def __getitem__(self, statement: sa.Executable) -> Prepared:
        entry = self._prepared.get(id(statement))
        if entry is None or entry[0] is not statement:
            entry = self._prepared[id(statement)] = (statement, Prepared(statement, self.dialect))
        return entry[1]


class Executor:
    """Runs ledger statements on one checked-out connection (see the module docstring)."""

    __slots__ = ("_connection", "_driver", "_in_transaction", "_raw", "_statements", "dialect")

    def __init__(self, connection: AsyncConnection, raw: Any, statements: Statements) -> None:
        self._connection = connection
        self._raw = raw
        self._statements = statements
        self._driver = _DRIVERS[connection.dialect.driver]
        self._in_transaction = False
        self.dialect = connection.dialect

    async def fetch_all(
        self, statement: sa.Executable, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        prepared = self._statements[statement]
        args = prepared.args(params)
        try:
            records = await self._driver.fetch(self._raw, prepared.sql, args)
        except Exception as exc:
            raise await self._translate(prepared.sql, args, exc) from exc
        return [prepared.row(record) for record in records]

    async def fetch_one(
        self, statement: sa.Executable, params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The first row (None when there is none)."""
        rows = await self.fetch_all(statement, params)
        return rows[0] if rows else None

    async def fetch_value(self, statement: sa.Executable, params: Mapping[str, Any]) -> Any:
        """The first column of the first row (None when there is no row)."""
        row = await self.fetch_one(statement, params)
        return None if row is None else next(iter(row.values()))

    async def run(
        self, steps: Sequence[sa.Executable], params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """A transition given as steps (``db.statements``): one statement runs alone; several
        run as one transaction, the first deciding (no row: nothing more runs). The last row
        a step returned, or None."""
        if len(steps) == 1:
            return await self.fetch_one(steps[0], params)
        async with self.transaction():
            return await self.run_steps(steps, params)

    async def run_steps(
        self, steps: Sequence[sa.Executable], params: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """``run`` inside a transaction the caller holds."""
        row = await self.fetch_one(steps[0], params)
        if row is None:
            return None
        for step in steps[1:]:
            row = await self.fetch_one(step, params) or row
        return row

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """The statements of the block commit together (SQLite: under the write lock)."""
        assert not self._in_transaction, "transactions do not nest"
        await self._call(self._driver.begin)
        self._in_transaction = True
        try:
            yield
        except BaseException:
            self._in_transaction = False
            if not self._driver.is_closed(self._raw):
                await self._call(self._driver.rollback)
            raise
        self._in_transaction = False
        await self._call(self._driver.commit)

    async def _call(self, step: Callable[[Any], Any]) -> None:
        try:
            await step(self._raw)
        except Exception as exc:
            raise await self._translate(step.__name__.upper(), (), exc) from exc

    async def _translate(self, sql: str, args: Any, exc: Exception) -> Exception:
        """What SQLAlchemy raises for this driver error; a dead connection is invalidated
        first (the pool then replaces it), as SQLAlchemy does."""
        kind = self._driver.error(exc)
        if kind is None:
            return exc  # not a database error (a bug): let it through as it is
        closed = self._driver.is_closed(self._raw) or isinstance(exc, OSError)
        if closed:
            await self._connection.invalidate()
        error: Exception = kind(sql, args, exc, connection_invalidated=closed)
        return error
