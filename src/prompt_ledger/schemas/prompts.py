"""Request and response bodies of the full-mode registry routes (SPEC §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from prompt_ledger.db.tables import (
    EventType,
    Prompt,
    PromptEvent,
    PromptMode,
    PromptVersion,
    VersionStatus,
)
from prompt_ledger.schemas.common import JsonObject, StrictModel, Text
from prompt_ledger.schemas.labels import SplitEntryModel
from prompt_ledger.services.rendering import MAX_TEMPLATE_BYTES


class SavePromptRequest(StrictModel):
    template_source: Annotated[Text, Field(min_length=1, max_length=MAX_TEMPLATE_BYTES)]
    description: Annotated[Text, Field(max_length=10_000)] | None = None
    metadata: JsonObject = Field(default_factory=dict)
    activate: bool = True


class VersionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version_number: int
    checksum: str
    status: VersionStatus
    variables: list[str]
    # The ORM attribute is ``metadata_`` (``metadata`` is reserved by SQLAlchemy).
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime


class VersionOut(VersionSummary):
    template_source: str


class _PromptBase(BaseModel):
    name: str
    mode: PromptMode
    description: str | None
    created_at: datetime
    updated_at: datetime

    @staticmethod
    def _fields(prompt: Prompt) -> dict[str, Any]:
        return {
            "name": prompt.name,
            "mode": prompt.mode,
            "description": prompt.description,
            "created_at": prompt.created_at,
            "updated_at": prompt.updated_at,
        }


class PromptOut(_PromptBase):
    active_version: VersionOut | None

    @classmethod
    def of(cls, prompt: Prompt, active: PromptVersion | None) -> PromptOut:
        version = VersionOut.model_validate(active) if active else None
        return cls(**cls._fields(prompt), active_version=version)


class PromptListItem(_PromptBase):
    """A prompt in a list: its active version without the template text."""

    active_version: VersionSummary | None

    @classmethod
    def of(cls, prompt: Prompt, active: PromptVersion | None) -> PromptListItem:
        version = VersionSummary.model_validate(active) if active else None
        return cls(**cls._fields(prompt), active_version=version)


class PromptPage(BaseModel):
    items: list[PromptListItem]
    next_cursor: str | None


class SavePromptResponse(BaseModel):
    name: str
    mode: PromptMode
    description: str | None
    version: VersionOut
    created: bool


class VersionList(BaseModel):
    items: list[VersionOut]


class LabelTarget(BaseModel):
    """Where a label pointed: one of ``version_number`` and ``split`` is set."""

    version_number: int | None = None
    split: list[SplitEntryModel] | None = None


class EventOut(BaseModel):
    type: EventType
    version_number: int | None
    previous_version_number: int | None
    # ``label_moved`` only (SPEC §9.2): the label, its split (when it became one) and where
    # it pointed before (null for a new label). A deleted label moved to nothing: its
    # ``version_number`` and ``split`` are both null.
    label: str | None = None
    split: list[SplitEntryModel] | None = None
    previous: LabelTarget | None = None
    created_at: datetime

    @classmethod
    def of(cls, event: PromptEvent) -> EventOut:
        details = event.details if event.type == EventType.LABEL_MOVED else {}
        previous = details.get("previous")
        return cls(
            type=event.type,
            version_number=event.version_number,
            previous_version_number=event.previous_version_number,
            label=details.get("label"),
            split=details.get("split"),
            previous=LabelTarget.model_validate(previous) if previous else None,
            created_at=event.created_at,
        )


class EventList(BaseModel):
    items: list[EventOut]
