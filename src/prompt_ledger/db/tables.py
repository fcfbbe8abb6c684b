"""Tables and enums (SPEC §3). One metadata with a naming convention, so a unique
violation can be recognised by its constraint's name (see ``repositories``)."""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator
from uuid_utils.compat import uuid7

from prompt_ledger.domain import ProviderName as ProviderName  # re-exported

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Constraint names the services translate into domain outcomes.
UQ_VERSION_NUMBER = "uq_prompt_versions_prompt_id_version_number"
UQ_VERSION_CHECKSUM = "uq_prompt_versions_prompt_id_checksum"
UQ_PROMPT_NAME = "uq_prompts_name"
UQ_IDEMPOTENCY_KEY = "uq_executions_idempotency_key"


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both backends (SQLite stores naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; PromptLedger stores UTC-aware timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
# A JSON column where Python None is SQL NULL (not the JSON value ``null``).
NullableJSONType = sa.JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")

# SPEC §9.2: a label's name. ``active`` is the active pointer of §3/§4.
LABEL_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
ACTIVE_LABEL = "active"


class Money(TypeDecorator[Decimal]):
    """An exact decimal amount: NUMERIC on PostgreSQL; SQLite keeps it as REAL (15-16
    significant digits). Read back as ``Decimal`` whatever the driver hands over (its own
    result processing is bypassed: asyncpg's needs the column's type oid, which the ledger
    executor's prepared statements do not pass)."""

    impl = sa.Numeric(asdecimal=True)
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision, scale, asdecimal=True)
        self._quantum = Decimal(1).scaleb(-scale)

    def result_processor(self, dialect: sa.Dialect, coltype: object) -> Any:
        quantum = self._quantum

        def process(value: object) -> Decimal | None:
            if value is None:
                return None
            if isinstance(value, Decimal):
                return value
            return Decimal(str(value)).quantize(quantum)

        return process


PRICE = Money(18, 6)
"""A price in USD per million tokens (a millionth of a dollar per Mtok is the finest)."""
COST = Money(24, 12)
"""An amount in USD: one token at $0.01/Mtok is 1e-8 USD, well inside 12 decimals."""


class PromptMode(enum.StrEnum):
    FULL = "full"
    TRACKING = "tracking"


class VersionStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    DEPRECATED = "deprecated"


class VersionType(enum.StrEnum):
    """A version's shape (SPEC §9.1): one template, or a list of chat messages."""

    TEXT = "text"
    CHAT = "chat"


class ExecutionMode(enum.StrEnum):
    SYNC = "sync"
    ASYNC = "async"


class ExecutionStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


# The statuses an execution never leaves: counted in the rollups when reached.
FINAL_STATUSES = (ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELED)


class EventType(enum.StrEnum):
    CREATED = "created"
    VERSION_CREATED = "version_created"
    ACTIVATED = "activated"
    MODE_CONVERTED = "mode_converted"
    LABEL_MOVED = "label_moved"


def _enum(cls: type[enum.Enum], name: str) -> sa.Enum:
    return sa.Enum(
        cls,
        name=name,
        values_callable=lambda members: [m.value for m in members],
        create_constraint=True,
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Prompt(Base):
    __tablename__ = "prompts"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(128), unique=True)
    mode: Mapped[PromptMode] = mapped_column(
        _enum(PromptMode, "prompt_mode"), default=PromptMode.FULL, index=True
    )
    description: Mapped[str | None] = mapped_column(sa.Text)
    active_version_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("prompt_versions.id", use_alter=True)
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class PromptVersion(Base):
    __tablename__ = "prompt_versions"
    __table_args__ = (
        sa.UniqueConstraint("prompt_id", "version_number"),
        sa.UniqueConstraint("prompt_id", "checksum"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(sa.ForeignKey("prompts.id", ondelete="CASCADE"))
    version_number: Mapped[int]
    type: Mapped[VersionType] = mapped_column(
        _enum(VersionType, "prompt_version_type"),
        default=VersionType.TEXT,
        server_default=VersionType.TEXT.value,
    )
    # The Jinja2 template of a text version; "" for a chat version (the API shows null), so
    # the column stays NOT NULL for the versions written before chat versions existed.
    template_source: Mapped[str] = mapped_column(sa.Text)
    # chat: [{role, content}, ... at most one {"type": "placeholder", "name": N}]; else null
    messages: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    # {model_name?, provider?, params?, response_format?}: what the version was written for
    config: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # JSON Schema (draft 2020-12) a run's variables must validate against
    variables_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    checksum: Mapped[str] = mapped_column(sa.String(64))
    variables: Mapped[list[str]] = mapped_column(JSONType, default=list)
    status: Mapped[VersionStatus] = mapped_column(_enum(VersionStatus, "prompt_version_status"))
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Model(Base):
    __tablename__ = "models"
    __table_args__ = (sa.UniqueConstraint("provider", "model_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    provider: Mapped[ProviderName] = mapped_column(_enum(ProviderName, "provider_name"))
    model_name: Mapped[str] = mapped_column(sa.String(128))
    max_tokens: Mapped[int]
    supports_streaming: Mapped[bool] = mapped_column(default=True)
    is_active: Mapped[bool] = mapped_column(default=True)
    # USD per million tokens; null: no price of our own (the price library's table is used).
    input_per_mtok: Mapped[Decimal | None] = mapped_column(PRICE)
    output_per_mtok: Mapped[Decimal | None] = mapped_column(PRICE)
    cached_input_per_mtok: Mapped[Decimal | None] = mapped_column(PRICE)


class Execution(Base):
    __tablename__ = "executions"
    __table_args__ = (
        sa.Index(None, "prompt_id", "created_at"),
        sa.Index(None, "status", "created_at"),
        sa.Index(None, "model_id"),
        sa.Index(None, "created_at"),
        sa.Index(None, "prompt_version_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, primary_key=True, default=uuid7)
    prompt_id: Mapped[int] = mapped_column(sa.ForeignKey("prompts.id", ondelete="CASCADE"))
    prompt_version_id: Mapped[int] = mapped_column(sa.ForeignKey("prompt_versions.id"))
    model_id: Mapped[int] = mapped_column(sa.ForeignKey("models.id"))
    execution_mode: Mapped[ExecutionMode] = mapped_column(_enum(ExecutionMode, "execution_mode"))
    status: Mapped[ExecutionStatus] = mapped_column(_enum(ExecutionStatus, "execution_status"))
    variables: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    rendered_prompt: Mapped[str] = mapped_column(sa.Text)
    # chat versions: the exact messages sent (rendered_prompt holds them as text); else null
    rendered_messages: Mapped[list[dict[str, str]] | None] = mapped_column(JSONType)
    params: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    params_dropped: Mapped[list[str]] = mapped_column(JSONType, default=list)
    response_text: Mapped[str | None] = mapped_column(sa.Text)
    prompt_tokens: Mapped[int | None]
    response_tokens: Mapped[int | None]
    latency_ms: Mapped[int | None]
    provider_request_id: Mapped[str | None] = mapped_column(sa.String(255))
    error_type: Mapped[str | None] = mapped_column(sa.String(32))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    attempts: Mapped[int] = mapped_column(default=0)
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), unique=True)
    # sha256 of (method, path, canonical JSON body): decides replay versus reuse.
    idempotency_fingerprint: Mapped[str | None] = mapped_column(sa.String(64))
    # When a queued row may run next (retry back-off); null means now.
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When its id was last handed to the queue: the sweeper re-publishes rows whose
    # publication is older than the sweep interval (a lost message, a publish that failed).
    dispatched_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    metadata_: Mapped[dict[str, Any]] = mapped_column("metadata", JSONType, default=dict)
    # The label a run asked for (SPEC §9.2) and the subject that chose a split's variant.
    label: Mapped[str | None] = mapped_column(sa.String(64))
    subject: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What the finished execution cost (null: no price known, or no token counts), and
    # where the price came from ("model", or the price library and its version).
    cost_usd: Mapped[Decimal | None] = mapped_column(COST)
    price_source: Mapped[str | None] = mapped_column(sa.String(64))
    # Streamed runs only (SPEC §10.1): from the provider call's start to its first text delta.
    time_to_first_token_ms: Mapped[int | None]


class PromptEvent(Base):
    __tablename__ = "prompt_events"
    __table_args__ = (sa.Index(None, "prompt_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(sa.ForeignKey("prompts.id", ondelete="CASCADE"))
    type: Mapped[EventType] = mapped_column(_enum(EventType, "prompt_event_type"))
    version_number: Mapped[int | None]
    previous_version_number: Mapped[int | None]
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class PromptLabel(Base):
    """A named pointer other than ``active`` (SPEC §9.2): to one version or a traffic split.

    ``active`` is not stored here: it is ``prompts.active_version_id``, the one source of
    truth the §4 rules and the run hot path already use (docs/decisions.md).
    """

    __tablename__ = "prompt_labels"
    __table_args__ = (
        sa.ForeignKeyConstraint(
            ["prompt_id", "version_number"],
            ["prompt_versions.prompt_id", "prompt_versions.version_number"],
            name="fk_prompt_labels_version",
        ),
        sa.CheckConstraint("(version_number IS NULL) <> (split IS NULL)", name="one_target"),
    )

    prompt_id: Mapped[int] = mapped_column(
        sa.ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    label: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    # Exactly one of: a version number, or a split ``[{"version": N, "weight": W}, ...]``.
    version_number: Mapped[int | None]
    split: Mapped[list[dict[str, int]] | None] = mapped_column(NullableJSONType)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExecutionRollup(Base):
    """Per prompt and UTC hour (of ``created_at``): totals of finished executions.

    Maintained in the transaction that finishes an execution, so analytics read a few rows
    per prompt and hour instead of scanning the ledger.
    """

    __tablename__ = "execution_rollups"

    # hour leads the key: windows scan a range of hours across all prompts.
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(
        sa.ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    executions: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    succeeded: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    failed: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_count: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    latency_sum: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    response_tokens: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    # Sum of the known costs (an execution without one adds 0).
    cost_usd: Mapped[Decimal] = mapped_column(COST, default=Decimal(0), server_default="0")


class LatencyRollup(Base):
    """Per prompt, UTC hour and latency bucket: how many finished executions fell in it."""

    __tablename__ = "latency_rollups"

    # hour leads the key: windows scan a range of hours across all prompts.
    hour: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    prompt_id: Mapped[int] = mapped_column(
        sa.ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class LatencyTotal(Base):
    """Per prompt and latency bucket, over all time: the all-time p95 reads O(prompts) rows."""

    __tablename__ = "latency_totals"

    prompt_id: Mapped[int] = mapped_column(
        sa.ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True
    )
    bucket: Mapped[int] = mapped_column(sa.SmallInteger, primary_key=True)
    count: Mapped[int] = mapped_column(sa.BigInteger, default=0)


# Upper bounds of the token-count buckets kept in ``execution_totals`` (cumulative columns
# ``<kind>_tokens_le_<bound>``); changing them needs a migration.
TOKEN_BUCKETS = (16, 64, 256, 1024, 4096, 16384, 65536)
TOKEN_KINDS = ("prompt", "response")


def _total_counters() -> list[str]:
    names = ["executions", "latency_count", "latency_sum"]
    for kind in TOKEN_KINDS:
        names += [f"{kind}_tokens_count", f"{kind}_tokens_sum"]
        names += [f"{kind}_tokens_le_{bound}" for bound in TOKEN_BUCKETS]
    return names


EXECUTION_TOTAL_COUNTERS = tuple(_total_counters())

# All-time totals of finished executions per prompt, model, execution mode and final status,
# maintained with the hourly rollups (same transaction). /metrics reads these O(prompts x
# models) rows instead of summing every hour of ``execution_rollups``; the per-prompt key
# spreads concurrent finishes over many rows, like the rollups do.
execution_totals = sa.Table(
    "execution_totals",
    Base.metadata,
    sa.Column("prompt_id", sa.ForeignKey("prompts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("model_id", sa.ForeignKey("models.id"), primary_key=True),
    sa.Column("execution_mode", _enum(ExecutionMode, "execution_mode"), primary_key=True),
    sa.Column("status", _enum(ExecutionStatus, "execution_status"), primary_key=True),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in EXECUTION_TOTAL_COUNTERS),
)
