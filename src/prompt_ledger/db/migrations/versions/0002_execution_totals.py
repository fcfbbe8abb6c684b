"""All-time execution totals per prompt, model, execution mode and final status (/metrics).

Backfilled from the ledger's finished rows, so /metrics counts executions that finished
before the upgrade too. (One pass over ``executions``; on a very large ledger, run
``promptledger migrate`` ahead of the deploy, see docs/production.md.)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of db/tables.py's TOKEN_BUCKETS and TOKEN_KINDS as of this revision.
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)
TOKEN_KINDS = ("prompt", "response")
TERMINAL = ("succeeded", "failed", "canceled")


def _enum(name: str, *values: str) -> sa.types.TypeEngine[Any]:
    """The enum type 0001 created (PostgreSQL), or a CHECK-constrained string (SQLite)."""
    if op.get_bind().dialect.name == "postgresql":
        return postgresql.ENUM(*values, name=name, create_type=False)
    return sa.Enum(*values, name=name, create_constraint=True)


def _counters() -> list[str]:
    names = ["executions", "latency_count", "latency_sum"]
    for kind in TOKEN_KINDS:
        names += [f"{kind}_tokens_count", f"{kind}_tokens_sum"]
        names += [f"{kind}_tokens_le_{bound}" for bound in TOKEN_BUCKETS]
    return names


def upgrade() -> None:
    keys: list[sa.Column[Any]] = [
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id"), primary_key=True),
        sa.Column("execution_mode", _enum("execution_mode", "sync", "async"), primary_key=True),
        sa.Column(
            "status",
            _enum("execution_status", "queued", "running", "succeeded", "failed", "canceled"),
            primary_key=True,
        ),
    ]
    counters = _counters()
    totals = op.create_table(
        "execution_totals",
        *keys,
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in counters),
    )
    assert totals is not None

    e = sa.table(
        "executions",
        *(
            sa.column(name)
            for name in (
                "prompt_id",
                "model_id",
                "execution_mode",
                "status",
                "latency_ms",
                "prompt_tokens",
                "response_tokens",
            )
        ),
    )

    def count_where(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
        return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)

    values: list[sa.ColumnElement[int]] = [
        sa.func.count(),
        count_where(e.c.latency_ms.is_not(None)),
        sa.func.coalesce(sa.func.sum(e.c.latency_ms), 0),
    ]
    for kind in TOKEN_KINDS:
        tokens = e.c[f"{kind}_tokens"]
        values += [count_where(tokens.is_not(None)), sa.func.coalesce(sa.func.sum(tokens), 0)]
        values += [count_where(tokens <= bound) for bound in TOKEN_BUCKETS]
    group = (e.c.prompt_id, e.c.model_id, e.c.execution_mode, e.c.status)
    backfill = (
        sa.select(*group, *values)
        .where(sa.cast(e.c.status, sa.String).in_(TERMINAL))
        .group_by(*group)
    )
    op.execute(
        totals.insert().from_select(
            ["prompt_id", "model_id", "execution_mode", "status", *counters], backfill
        )
    )


def downgrade() -> None:
    op.drop_table("execution_totals")
