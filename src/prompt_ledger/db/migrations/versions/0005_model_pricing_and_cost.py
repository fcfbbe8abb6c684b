"""Model prices and execution cost (SPEC §9.5).

``models`` gains its own prices (USD per million tokens, null: none of its own);
``executions`` gains ``cost_usd`` and ``price_source``; ``execution_rollups`` gains the sum
of the costs of its executions.

Existing rows: executions that finished before the upgrade keep ``cost_usd`` and
``price_source`` null (their cost was never recorded, and pricing them now would state a
price nobody looked up at the time), so the rollups' ``cost_usd`` starts at 0 for every
existing hour: analytics sum the costs that are known.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of db/tables.py's PRICE and COST as of this revision.
PRICE = sa.Numeric(18, 6)
COST = sa.Numeric(24, 12)


# Plain ALTER TABLE ADD / DROP COLUMN on both backends (SQLite 3.35+ drops a column in
# place): a batch copy of ``models`` would trip the foreign keys pointing at it, and a copy of
# ``executions`` would rewrite the whole ledger.
def _added() -> dict[str, list[sa.Column[Any]]]:
    return {
        "models": [
            sa.Column("input_per_mtok", PRICE, nullable=True),
            sa.Column("output_per_mtok", PRICE, nullable=True),
            sa.Column("cached_input_per_mtok", PRICE, nullable=True),
        ],
        "executions": [
            sa.Column("cost_usd", COST, nullable=True),
            sa.Column("price_source", sa.String(64), nullable=True),
        ],
        "execution_rollups": [sa.Column("cost_usd", COST, nullable=False, server_default="0")],
    }


def upgrade() -> None:
    for table, columns in _added().items():
        for column in columns:
            op.add_column(table, column)


def downgrade() -> None:
    for table, columns in reversed(_added().items()):
        for column in reversed(columns):
            op.drop_column(table, column.name)
