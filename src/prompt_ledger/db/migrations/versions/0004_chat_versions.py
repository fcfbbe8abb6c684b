"""Chat prompts and model config (SPEC §9.1): version type, messages, config, variables
schema; the messages a chat execution sent.

Every column is added nullable or with a default, so existing rows read as they did: every
version is a ``text`` version with no config and no schema (its checksum, the sha256 of its
template, stays right), and every execution has no ``rendered_messages``. No table is
copied (SQLite adds columns in place), so the upgrade is quick on a large ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON_COLUMNS = {
    "prompt_versions": ("messages", "config", "variables_schema"),
    "executions": ("rendered_messages",),
}


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        version_type = postgresql.ENUM("text", "chat", name="prompt_version_type")
        version_type.create(bind)
        op.add_column(
            "prompt_versions",
            sa.Column(
                "type",
                postgresql.ENUM("text", "chat", name="prompt_version_type", create_type=False),
                nullable=False,
                server_default="text",
            ),
        )
    else:
        # ADD COLUMN in place with its CHECK (what sa.Enum makes on SQLite); a batch
        # operation would copy the table, which the foreign keys into it make fragile.
        op.execute(
            "ALTER TABLE prompt_versions ADD COLUMN type VARCHAR(4) DEFAULT 'text' NOT NULL "
            "CONSTRAINT ck_prompt_versions_prompt_version_type CHECK (type IN ('text', 'chat'))"
        )
    for table, columns in _JSON_COLUMNS.items():
        for column in columns:
            op.add_column(table, sa.Column(column, _json(), nullable=True))


def downgrade() -> None:
    for table, columns in _JSON_COLUMNS.items():
        for column in columns:
            op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    op.execute("ALTER TABLE prompt_versions DROP COLUMN type")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TYPE prompt_version_type")
