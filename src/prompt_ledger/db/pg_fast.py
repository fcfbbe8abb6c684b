"""PostgreSQL: run a few hot-path statements on the asyncpg connection itself.

The execution hot path is three statements (resolve the prompt, version and model; insert the
row; finish it together with the rollups), each in an autocommit session. Profiles of a sync
run showed SQLAlchemy's per-statement machinery (ORM execution, compiled-cache lookup,
parameter processing, result building, the adapted cursor) costing more CPU than asyncpg and
PostgreSQL together, so those statements skip it:

* the SQL is still SQLAlchemy's: each statement is built once with SQLAlchemy (from the same
  tables), compiled once for the connection's dialect, and its text reused;
* parameters go through the same bind processors SQLAlchemy would apply (JSON, enums, UTC
  timestamps), in the compiled order;
* result columns go through the same result processors.

Only sessions bound to an autocommit connection (``db.session.ConnectionBoundSessions``, the
hot path's ``Runtime.autocommit_sessions``) take this path: there is no transaction for
SQLAlchemy to track, so running a statement beside it changes nothing, and the statement runs
on the session's own connection.
Everything else (and SQLite) keeps using SQLAlchemy normally.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_Processor = Callable[[Any], Any] | None


def usable(session: AsyncSession) -> bool:
    """True for a session bound to an autocommit PostgreSQL (asyncpg) connection."""
    return _connection(session) is not None


def _connection(session: AsyncSession) -> AsyncConnection | None:
    """The autocommit asyncpg connection the session is bound to (``ConnectionBoundSessions``)."""
    bind = session.bind
    if (
        isinstance(bind, AsyncConnection)
        and bind.dialect.driver == "asyncpg"
        and bind.sync_connection is not None
        and bind.sync_connection.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    ):
        return bind
    return None


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


_COMPILED: dict[int, tuple[sa.Executable, Compiled]] = {}


def compiled(statement: sa.Executable, dialect: sa.Dialect) -> Compiled:
    """The compiled form of a statement built once and kept (cached by identity)."""
    entry = _COMPILED.get(id(statement))
    if entry is None or entry[0] is not statement:
        entry = _COMPILED[id(statement)] = (statement, Compiled(statement, dialect))
    return entry[1]


async def _execute(
    session: AsyncSession, statement: sa.Executable, params: Mapping[str, Any], method: str
) -> tuple[Compiled, Any]:
    connection = _connection(session)
    assert connection is not None, "pg_fast needs a session from ConnectionBoundSessions"
    c = compiled(statement, connection.dialect)
    args = c.args(params)
    raw = await connection.get_raw_connection()
    try:
        result = await getattr(raw.driver_connection, method)(c.sql, *args)
    except Exception as exc:
        raise await _as_sqlalchemy_error(connection, raw, c.sql, args, exc) from exc
    return c, result


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
    closed = bool(raw.driver_connection.is_closed())
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
    c, record = await _execute(session, statement, params, "fetchrow")
    return None if record is None else c.row(record)


async def fetchval(
    session: AsyncSession, statement: sa.Executable, params: Mapping[str, Any]
) -> Any:
    _, value = await _execute(session, statement, params, "fetchval")
    return value
