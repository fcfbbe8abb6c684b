"""Labels, traffic splits (SPEC §9.2) and the version diff (§9.4)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

from pydantic import BaseModel, Field, model_validator

from prompt_ledger.db.tables import LABEL_PATTERN
from prompt_ledger.schemas.common import MAX_INT32, StrictModel, Text

if TYPE_CHECKING:
    from prompt_ledger.services.diff import VersionDiff
    from prompt_ledger.services.labels import LabelState, Split

LabelName = Annotated[str, Field(pattern=LABEL_PATTERN, description="a label name")]
VersionNumber = Annotated[int, Field(ge=1, le=MAX_INT32)]
# What a run may name a variant by: a user or session id (SPEC §9.2).
Subject = Annotated[Text, Field(min_length=1, max_length=255)]


class SplitEntryModel(StrictModel):
    version: VersionNumber
    weight: Annotated[int, Field(ge=1, le=100)]


class SetLabelRequest(StrictModel):
    """Exactly one of ``version`` and ``split``. A split has 2-10 entries naming distinct
    versions, with integer weights summing to 100 (each entry at least 1: a variant with no
    traffic is left out)."""

    version: VersionNumber | None = None
    split: Annotated[list[SplitEntryModel], Field(min_length=2, max_length=10)] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> SetLabelRequest:
        if (self.version is None) == (self.split is None):
            raise ValueError("give exactly one of `version` and `split`")
        if self.split is not None:
            numbers = [e.version for e in self.split]
            if len(set(numbers)) != len(numbers):
                raise ValueError("a split names each version once")
            total = sum(e.weight for e in self.split)
            if total != 100:
                raise ValueError(f"split weights sum to {total}; they must sum to 100")
        return self


def split_out(split: Split | None) -> list[SplitEntryModel] | None:
    if split is None:
        return None
    return [SplitEntryModel(version=e.version, weight=e.weight) for e in split]


class LabelOut(BaseModel):
    """Exactly one of ``version_number`` and ``split`` is set."""

    label: str
    version_number: int | None
    split: list[SplitEntryModel] | None
    updated_at: datetime

    @classmethod
    def of(cls, state: LabelState) -> LabelOut:
        return cls(
            label=state.label,
            version_number=state.version_number,
            split=split_out(state.split),
            updated_at=state.updated_at,
        )


class LabelList(BaseModel):
    items: list[LabelOut]


class DiffChanges(BaseModel):
    """What differs between the two versions. ``template`` is set when both are text
    versions; ``messages`` / ``config`` / ``variables_schema`` compare those parts (§9.1)."""

    template: bool | None
    messages: bool | None = None
    config: bool
    variables_schema: bool
    variables_added: list[str]
    variables_removed: list[str]


class DiffOut(BaseModel):
    from_: int = Field(serialization_alias="from")
    to: int
    unified: str
    changes: DiffChanges

    @classmethod
    def of(cls, diff: VersionDiff) -> DiffOut:
        return cls(
            from_=diff.from_version,
            to=diff.to_version,
            unified=diff.unified,
            changes=DiffChanges(
                template=diff.template_changed,
                messages=diff.messages_changed,
                config=diff.config_changed,
                variables_schema=diff.variables_schema_changed,
                variables_added=list(diff.variables_added),
                variables_removed=list(diff.variables_removed),
            ),
        )
