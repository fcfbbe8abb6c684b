"""Streaming runs (SPEC §10.1): ``executions.time_to_first_token_ms``.

Null for every row that was not streamed (every row before the upgrade included): only a
stream has a first token distinct from the whole answer.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain ALTER TABLE ADD COLUMN on both backends (no batch copy of the ledger).
    op.add_column("executions", sa.Column("time_to_first_token_ms", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("executions", "time_to_first_token_ms")
