"""Request and response bodies of the full-mode registry routes (SPEC §6)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self, get_args

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from prompt_ledger.db.tables import (
    EventType,
    Prompt,
    PromptEvent,
    PromptMode,
    PromptVersion,
    ProviderName,
    VersionStatus,
    VersionType,
)
from prompt_ledger.schemas.common import JsonObject, StrictModel, Text
from prompt_ledger.schemas.executions import Params
from prompt_ledger.schemas.labels import SplitEntryModel
from prompt_ledger.services.prompts import VersionContent
from prompt_ledger.services.rendering import CHAT_ROLES, MAX_TEMPLATE_BYTES, PLACEHOLDER_NAME

Role = Literal["system", "developer", "user", "assistant"]
assert get_args(Role) == CHAT_ROLES, "the roles are rendering.CHAT_ROLES (SPEC §9.1)"
TemplateText = Annotated[Text, Field(min_length=1, max_length=MAX_TEMPLATE_BYTES)]
MAX_MESSAGES = 500


class ChatMessage(StrictModel):
    """A chat message whose ``content`` is a Jinja2 template."""

    role: Role
    content: Annotated[Text, Field(max_length=MAX_TEMPLATE_BYTES)]


class Placeholder(StrictModel):
    """Where a run inserts the list of ``{role, content}`` messages in variable ``name``."""

    type: Literal["placeholder"]
    name: Annotated[str, Field(pattern=f"^{PLACEHOLDER_NAME.pattern}$")]


class ModelConfig(StrictModel):
    """The model and parameters a version was written for; a run may omit ``model_name``
    then, and its ``params`` override these."""

    model_name: Annotated[Text, Field(min_length=1, max_length=128)] | None = None
    provider: ProviderName | None = None
    params: Params | None = None
    response_format: JsonObject | None = None


class VersionContentIn(StrictModel):
    """The content fields of a save (``PUT``) or a code registration (SPEC §9.1)."""

    type: VersionType = VersionType.TEXT
    template_source: TemplateText | None = None
    messages: Annotated[list[ChatMessage | Placeholder], Field(max_length=MAX_MESSAGES)] | None = (
        None
    )
    config: ModelConfig | None = None
    variables_schema: JsonObject | None = None

    @model_validator(mode="after")
    def _shape(self) -> Self:
        if self.type == VersionType.TEXT:
            if self.template_source is None:
                raise ValueError("a text version needs template_source")
            if self.messages is not None:
                raise ValueError('messages belong to a chat version: send "type": "chat"')
        else:
            if self.template_source is not None:
                raise ValueError("a chat version has messages, not template_source")
            if not self.messages:
                raise ValueError("a chat version needs at least one message")
            if sum(isinstance(m, Placeholder) for m in self.messages) > 1:
                raise ValueError("a chat version has at most one placeholder")
        return self

    def content(self) -> VersionContent:
        """The version content as the service takes it (absent members are None)."""
        config = self.config.model_dump(mode="json", exclude_none=True) if self.config else None
        if config and "params" in config and not config["params"]:
            del config["params"]
        return VersionContent(
            type=self.type,
            template_source=self.template_source,
            messages=None
            if self.messages is None
            else [m.model_dump(mode="json") for m in self.messages],
            config=config or None,
            variables_schema=self.variables_schema,
        )


class SavePromptRequest(VersionContentIn):
    description: Annotated[Text, Field(max_length=10_000)] | None = None
    metadata: JsonObject = Field(default_factory=dict)
    activate: bool = True


class VersionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    version_number: int
    type: VersionType = VersionType.TEXT
    checksum: str
    status: VersionStatus
    variables: list[str]
    # The ORM attribute is ``metadata_`` (``metadata`` is reserved by SQLAlchemy).
    metadata: dict[str, Any] = Field(validation_alias=AliasChoices("metadata_", "metadata"))
    created_at: datetime


class VersionOut(VersionSummary):
    template_source: str | None  # null for a chat version
    messages: list[dict[str, Any]] | None = None  # a chat version's messages
    config: dict[str, Any] | None = None
    variables_schema: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _chat_has_no_template(self) -> Self:
        # A chat version's row keeps "" in the NOT NULL template column (see tables.py).
        if self.type == VersionType.CHAT:
            self.template_source = None
        return self


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


class PromptInfo(_PromptBase):
    """The prompt a resolved version belongs to (no version of its own)."""

    @classmethod
    def of(cls, prompt: Prompt) -> PromptInfo:
        return cls(**cls._fields(prompt))


class ResolvedVersion(VersionOut):
    """``GET /v1/prompts/{name}/resolve`` of one version (SPEC §9.3): the version object, with
    the prompt it belongs to and the label it was resolved by (null for ``version=N``)."""

    prompt: PromptInfo
    label: str | None


class ResolvedSplit(BaseModel):
    """``GET /v1/prompts/{name}/resolve`` of a split label: the split and every version it
    names, by number, so a client can choose locally (SPEC §9.2's bucketing)."""

    prompt: PromptInfo
    label: str
    split: list[SplitEntryModel]
    versions: dict[int, VersionOut]
