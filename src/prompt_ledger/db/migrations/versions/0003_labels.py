"""Labels and traffic splits (SPEC §9.2): ``prompt_labels``, the ``label_moved`` event,
and the ``label`` / ``subject`` an execution was run with.

No backfill: the label ``active`` is not a row but ``prompts.active_version_id`` (one
source of truth, docs/decisions.md), so every existing prompt already has its ``active``
label, and existing executions ran without a label (null).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_TYPES = ("created", "version_created", "activated", "mode_converted")
NEW_EVENT_TYPE = "label_moved"


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(
        postgresql.JSONB(none_as_null=True), "postgresql"
    )


def _event_type(*values: str) -> sa.Enum:
    return sa.Enum(*values, name="prompt_event_type", create_constraint=True)


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Committed by the migration's transaction; the value is not used in it.
        op.execute(f"ALTER TYPE prompt_event_type ADD VALUE IF NOT EXISTS '{NEW_EVENT_TYPE}'")
    else:  # SQLite: the enum is a CHECK constraint, re-created by a table copy
        with op.batch_alter_table("prompt_events") as batch:
            batch.alter_column(
                "type",
                existing_type=_event_type(*EVENT_TYPES),
                type_=_event_type(*EVENT_TYPES, NEW_EVENT_TYPE),
                existing_nullable=False,
            )

    op.create_table(
        "prompt_labels",
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(64), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=True),
        sa.Column("split", _json(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("prompt_id", "label", name="pk_prompt_labels"),
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompts.id"],
            name="fk_prompt_labels_prompt_id_prompts",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id", "version_number"],
            ["prompt_versions.prompt_id", "prompt_versions.version_number"],
            name="fk_prompt_labels_version",
        ),
        sa.CheckConstraint(
            "(version_number IS NULL) <> (split IS NULL)", name="ck_prompt_labels_one_target"
        ),
    )
    with op.batch_alter_table("executions") as batch:
        batch.add_column(sa.Column("label", sa.String(64), nullable=True))
        batch.add_column(sa.Column("subject", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("executions") as batch:
        batch.drop_column("subject")
        batch.drop_column("label")
    op.drop_table("prompt_labels")
    events = sa.table("prompt_events", sa.column("type", sa.String()))
    op.execute(events.delete().where(sa.cast(events.c.type, sa.String()) == NEW_EVENT_TYPE))
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table("prompt_events") as batch:
            batch.alter_column(
                "type",
                existing_type=_event_type(*EVENT_TYPES, NEW_EVENT_TYPE),
                type_=_event_type(*EVENT_TYPES),
                existing_nullable=False,
            )
    # PostgreSQL cannot drop one value of an enum type: ``label_moved`` stays in
    # ``prompt_event_type``, unused (0001's downgrade drops the whole type).
