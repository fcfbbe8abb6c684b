"""Alembic environment: runs on the connection ``db.migrate`` hands over (which holds the
migration lock), or opens one from the settings when called as plain ``alembic``."""

from __future__ import annotations

from alembic import context

from prompt_ledger.config import get_settings
from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.db.tables import Base

config = context.config
target_metadata = Base.metadata


def _run(connection: object) -> None:
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=target_metadata,
        render_as_batch=True,  # SQLite alters tables by copy
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = config.attributes.get("url") or get_settings().resolved_database_url
    engine = create_sync_engine(url)
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run against a database")
run_migrations_online()
