"""Initial schema: prompts, prompt_versions, models, executions, prompt_events.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _enum(name: str, *values: str) -> sa.Enum:
    return sa.Enum(*values, name=name, create_constraint=True)


def _timestamp(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("provider", _enum("provider_name", "openai"), nullable=False),
        sa.Column("model_name", sa.String(128), nullable=False),
        sa.Column("max_tokens", sa.Integer(), nullable=False),
        sa.Column("supports_streaming", sa.Boolean(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("provider", "model_name"),
    )
    # The prompts -> prompt_versions pointer closes a cycle: SQLite accepts the forward
    # reference inline (and cannot add constraints later); PostgreSQL adds it at the end.
    active_fk = (
        [sa.ForeignKeyConstraint(["active_version_id"], ["prompt_versions.id"])] if sqlite else []
    )
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("mode", _enum("prompt_mode", "full", "tracking"), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("active_version_id", sa.Integer()),
        _timestamp("created_at"),
        _timestamp("updated_at"),
        sa.UniqueConstraint("name"),
        *active_fk,
    )
    op.create_index(op.f("ix_prompts_mode"), "prompts", ["mode"])
    op.create_table(
        "prompt_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("template_source", sa.Text(), nullable=False),
        sa.Column("checksum", sa.String(64), nullable=False),
        sa.Column("variables", _json(), nullable=False),
        sa.Column(
            "status",
            _enum("prompt_version_status", "draft", "active", "deprecated"),
            nullable=False,
        ),
        sa.Column("metadata", _json(), nullable=False),
        _timestamp("created_at"),
        sa.UniqueConstraint("prompt_id", "version_number"),
        sa.UniqueConstraint("prompt_id", "checksum"),
    )
    if not sqlite:
        op.create_foreign_key(
            op.f("fk_prompts_active_version_id_prompt_versions"),
            "prompts",
            "prompt_versions",
            ["active_version_id"],
            ["id"],
        )
    op.create_table(
        "prompt_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "type",
            _enum("prompt_event_type", "created", "version_created", "activated", "mode_converted"),
            nullable=False,
        ),
        sa.Column("version_number", sa.Integer()),
        sa.Column("previous_version_number", sa.Integer()),
        sa.Column("details", _json(), nullable=False),
        _timestamp("created_at"),
    )
    op.create_index(op.f("ix_prompt_events_prompt_id_id"), "prompt_events", ["prompt_id", "id"])
    op.create_table(
        "executions",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "prompt_version_id", sa.Integer(), sa.ForeignKey("prompt_versions.id"), nullable=False
        ),
        sa.Column("model_id", sa.Integer(), sa.ForeignKey("models.id"), nullable=False),
        sa.Column("execution_mode", _enum("execution_mode", "sync", "async"), nullable=False),
        sa.Column(
            "status",
            _enum("execution_status", "queued", "running", "succeeded", "failed", "canceled"),
            nullable=False,
        ),
        sa.Column("variables", _json(), nullable=False),
        sa.Column("rendered_prompt", sa.Text(), nullable=False),
        sa.Column("params", _json(), nullable=False),
        sa.Column("params_dropped", _json(), nullable=False),
        sa.Column("response_text", sa.Text()),
        sa.Column("prompt_tokens", sa.Integer()),
        sa.Column("response_tokens", sa.Integer()),
        sa.Column("latency_ms", sa.Integer()),
        sa.Column("provider_request_id", sa.String(255)),
        sa.Column("error_type", sa.String(32)),
        sa.Column("error_message", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("idempotency_fingerprint", sa.String(64)),
        _timestamp("not_before", nullable=True),
        _timestamp("dispatched_at", nullable=True),
        sa.Column("metadata", _json(), nullable=False),
        _timestamp("created_at"),
        _timestamp("started_at", nullable=True),
        _timestamp("completed_at", nullable=True),
        sa.UniqueConstraint("idempotency_key"),
    )
    op.create_index(op.f("ix_executions_created_at"), "executions", ["created_at"])
    op.create_index(op.f("ix_executions_model_id"), "executions", ["model_id"])
    op.create_index(
        op.f("ix_executions_prompt_id_created_at"), "executions", ["prompt_id", "created_at"]
    )
    op.create_index(op.f("ix_executions_status_created_at"), "executions", ["status", "created_at"])
    op.create_index(
        op.f("ix_executions_prompt_version_id_created_at"),
        "executions",
        ["prompt_version_id", "created_at"],
    )
    counters = (
        "executions",
        "succeeded",
        "failed",
        "latency_count",
        "latency_sum",
        "prompt_tokens",
        "response_tokens",
    )
    op.create_table(
        "execution_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in counters),
    )
    op.create_table(
        "latency_rollups",
        sa.Column("hour", sa.DateTime(timezone=True), primary_key=True),
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("bucket", sa.SmallInteger(), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "latency_totals",
        sa.Column(
            "prompt_id",
            sa.Integer(),
            sa.ForeignKey("prompts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("bucket", sa.SmallInteger(), primary_key=True),
        sa.Column("count", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.drop_table("latency_totals")
    op.drop_table("latency_rollups")
    op.drop_table("execution_rollups")
    op.drop_table("executions")
    op.drop_table("prompt_events")
    if not sqlite:
        op.drop_constraint(
            op.f("fk_prompts_active_version_id_prompt_versions"), "prompts", type_="foreignkey"
        )
    op.drop_table("prompt_versions")
    op.drop_table("prompts")
    op.drop_table("models")
    if not sqlite:
        for enum_name in (
            "provider_name",
            "prompt_mode",
            "prompt_version_status",
            "prompt_event_type",
            "execution_mode",
            "execution_status",
        ):
            sa.Enum(name=enum_name).drop(op.get_bind(), checkfirst=True)
