"""Apply migrations under a lock, so any number of replicas may start at once.

PostgreSQL: a session-level advisory lock held on the connection Alembic runs on.
SQLite: an exclusive ``flock`` on a file beside the database.
"""

from __future__ import annotations

import fcntl
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from prompt_ledger.db.session import create_sync_engine, is_sqlite

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Arbitrary but fixed: every PromptLedger process contends for the same advisory lock.
_ADVISORY_LOCK_KEY = 0x70726F6D70746C67  # "promptlg"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


@contextmanager
def _sqlite_file_lock(url: str) -> Iterator[None]:
    database = sa.make_url(url).database
    if not database or database == ":memory:":
        yield
        return
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(path.name + ".migrate.lock").open("w") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def upgrade(url: str) -> None:
    """Bring the schema to head; concurrent callers wait, then find nothing to do."""
    config = alembic_config(url)
    if is_sqlite(url):
        with _sqlite_file_lock(url):
            command.upgrade(config, "head")
        return
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.select(sa.func.pg_advisory_lock(_ADVISORY_LOCK_KEY)))
            conn.commit()
            try:
                config.attributes["connection"] = conn
                command.upgrade(config, "head")
                conn.commit()
            finally:
                conn.execute(sa.select(sa.func.pg_advisory_unlock(_ADVISORY_LOCK_KEY)))
                conn.commit()
    finally:
        engine.dispose()


def is_current(url: str) -> bool:
    """True when the database's revision is the newest one shipped."""
    head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision() == head
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def wait_until_current(url: str, *, timeout_s: float = 120.0, poll_s: float = 0.5) -> None:
    """Block until another process has migrated (workers never migrate themselves)."""
    deadline = time.monotonic() + timeout_s
    while not is_current(url):
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"schema not migrated after {timeout_s:.0f}s; run `promptledger migrate`"
            )
        time.sleep(poll_s)
