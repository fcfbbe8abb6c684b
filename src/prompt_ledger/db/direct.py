"""Hot-path statements run on the driver connection itself (asyncpg or aiosqlite).

The execution hot path is a few statements (resolve the prompt, version and model; insert the
row; finish it together with the rollups; the registry read). Profiles showed SQLAlchemy's
per-statement machinery (ORM execution, compiled-cache lookup, parameter processing, result
building, the adapted cursor and its greenlet hops) costing more CPU than the driver and the
database together: 0.22-0.29 ms per SQLite statement against 0.03 ms for aiosqlite's own
``execute_fetchall``. So those statements skip it:

* the SQL is still SQLAlchemy's: each statement is built once with SQLAlchemy (from the same
  tables), compiled once per dialect, and its text reused;
* parameters go through the same bind processors SQLAlchemy would apply (JSON, enums, UUIDs,
  timestamps), in the compiled order;
* result columns go through the same result processors;
* driver errors are raised as the ``DBAPIError`` SQLAlchemy would raise (503 when the
  database is down), after invalidating a connection that died.

Where: on PostgreSQL, sessions bound to an autocommit connection
(``db.session.ConnectionBoundSessions``, the hot path's ``Runtime.autocommit_sessions``): there
is no transaction for SQLAlchemy to track, so running a statement beside it changes nothing.
On SQLite, any session: the statement runs on the session's connection inside its transaction
(``BEGIN IMMEDIATE``), committed or rolled back with it. Like Core statements, these bypass
the ORM identity map: callers use them for rows the session has not loaded.
Everything else keeps using SQLAlchemy normally.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_Processor = Callable[[Any], Any] | None


def usable(session: AsyncSession) -> bool:
    """Whether ``session`` can run direct statements (see the module docstring)."""
    bind = session.bind
    if isinstance(bind, AsyncConnection):
        return _autocommit_asyncpg(bind)
    return bind is not None and bind.dialect.driver == "aiosqlite"


def _autocommit_asyncpg(connection: AsyncConnection) -> bool:
    return (
        connection.dialect.driver == "asyncpg"
        and connection.sync_connection is not None
        and connection.sync_connection.get_execution_options().get("isolation_level")
        == "AUTOCOMMIT"
    )


async def _connection(session: AsyncSession) -> AsyncConnection:
    bind = session.bind
    if isinstance(bind, AsyncConnection) and _autocommit_asyncpg(bind):
        return bind
    if bind is not None and bind.dialect.driver == "aiosqlite":
        return await session.connection()  # begins the session's transaction if needed
    raise RuntimeError("direct statements need a session that `usable` accepts")


class Compiled:
    """A statement's SQL text, its parameter order and processors, and its result columns'
    processors: what SQLAlchemy would do per execution, worked out once."""

    __slots__ = ("_fixed", "_params", "columns", "sql")

    def __init__(self, statement: sa.Executable, dialect: sa.Dialect) -> None:
        compiled: Any = cast(Any, statement).compile(dialect=dialect)
        self.sql: str = compiled.string
        processors: Mapping[str, _Processor] = compiled._bind_processors
        self._params: list[tuple[str, _Processor]] = [
            (name, processors.get(name)) for name in compiled.positiontup
        ]
        # values written into the statement itself (``status == RUNNING``), not passed
        self._fixed: dict[str, Any] = {
            name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required
        }
        self.columns: list[tuple[str, _Processor]] = []
        for key, _name, _objects, type_ in compiled._result_columns:
            self.columns.append((key, type_._cached_result_processor(dialect, None)))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        values = []
        for name, process in self._params:
            value = params[name] if name in params else self._fixed[name]
            values.append(value if process is None else process(value))
        return values

    def row(self, record: Sequence[Any]) -> dict[str, Any]:
        """A fetched record as ``{result key: processed value}``."""
        return {
            key: value if process is None or value is None else process(value)
            for (key, process), value in zip(self.columns, record, strict=True)
        }


_COMPILED: dict[tuple[int, str], tuple[sa.Executable, Compiled]] = {}


def compiled(statement: sa.Executable, dialect: sa.Dialect) -> Compiled:
    """The compiled form of a statement built once and kept (by identity and dialect)."""
    key = (id(statement), dialect.name)
    entry = _COMPILED.get(key)
    if entry is None or entry[0] is not statement:
        entry = _COMPILED[key] = (statement, Compiled(statement, dialect))
    return entry[1]


async def _fetch(
    session: AsyncSession, statement: sa.Executable, params: Mapping[str, Any]
) -> tuple[Compiled, Sequence[Any] | None]:
    """Run the statement; its first row (None when there is none)."""
    connection = await _connection(session)
    c = compiled(statement, connection.dialect)
    args = c.args(params)
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        if connection.dialect.driver == "asyncpg":
            return c, await driver.fetchrow(c.sql, *args)
        rows = await driver.execute_fetchall(c.sql, args)
    except Exception as exc:
        raise await _as_sqlalchemy_error(connection, raw, c.sql, args, exc) from exc
    return c, rows[0] if rows else None


async def _as_sqlalchemy_error(
    connection: AsyncConnection, raw: Any, sql: str, args: list[Any], exc: Exception
) -> Exception:
    """What SQLAlchemy would have raised for this driver error (its DBAPI translation, then a
    ``DBAPIError``), after invalidating a connection that died, as SQLAlchemy would: callers
    and error handlers (503 when the database is down) see no difference."""
    dialect = connection.dialect
    adapted = raw.dbapi_connection
    try:
        adapted._handle_exception(exc)  # raises the DBAPI-level translation
    except Exception as translated:
        dbapi_error = translated
    else:  # pragma: no cover - _handle_exception always raises
        dbapi_error = exc
    is_closed = getattr(raw.driver_connection, "is_closed", None)  # asyncpg's
    closed = bool(is_closed()) if callable(is_closed) else False
    if closed:
        await connection.invalidate()
    if not isinstance(dbapi_error, dialect.loaded_dbapi.Error):
        return dbapi_error  # OSError and the like: not a driver error
    disconnect = closed or dialect.is_disconnect(dbapi_error, adapted, None)
    error: Exception = sa.exc.DBAPIError.instance(
        sql,
        args,
        dbapi_error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=disconnect,
        dialect=dialect,
    )
    return error


async def fetchrow(
    session: AsyncSession, statement: sa.Executable, params: Mapping[str, Any]
) -> dict[str, Any] | None:
    c, record = await _fetch(session, statement, params)
    return None if record is None else c.row(record)


async def fetchval(
    session: AsyncSession, statement: sa.Executable, params: Mapping[str, Any]
) -> Any:
    """The first column of the first row (None when there is no row)."""
    _, record = await _fetch(session, statement, params)
    return None if record is None else record[0]
