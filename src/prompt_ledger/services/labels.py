"""Labels (named pointers) and traffic splits (SPEC §9.2).

The label ``active`` is the active pointer of §3/§4: it is read from and moved through
``prompts.active_version_id`` (``services.prompts``), never stored as a label row, so there
is one source of truth for it. Every other label is a ``prompt_labels`` row pointing to one
version or to a split. Every write locks the prompt row first, like every other writer of a
prompt, so two moves of one prompt's labels take turns and neither is lost.

``resolve_with`` is the one place a label (or a version number) becomes concrete versions;
``Resolution.choose`` is the one place a split picks the version of one run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db import ledger
from prompt_ledger.db import repositories as repo
from prompt_ledger.db.executor import Executor
from prompt_ledger.db.session import Database
from prompt_ledger.db.tables import (
    ACTIVE_LABEL,
    EventType,
    Prompt,
    PromptLabel,
    PromptVersion,
    utcnow,
)
from prompt_ledger.domain import choose_variant
from prompt_ledger.errors import NotFound, ValidationFailed
from prompt_ledger.services import prompts


@dataclass(frozen=True, slots=True)
class SplitEntry:
    version: int
    weight: int


Split = tuple[SplitEntry, ...]


@dataclass(frozen=True, slots=True)
class LabelState:
    """Where a label points: exactly one of ``version_number`` and ``split`` is set."""

    label: str
    version_number: int | None
    split: Split | None
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Resolution:
    """A label or version number of a prompt, made concrete.

    ``version`` is the version it names (None for a split, and for ``active`` on a prompt
    with only drafts); ``split`` the split it names (else None); ``versions`` every version
    it names, by number.
    """

    prompt: Prompt
    label: str | None  # None when resolved by version number
    version: PromptVersion | None
    split: Split | None
    versions: Mapping[int, PromptVersion]

    def choose(self, subject: str | None = None) -> PromptVersion | None:
        """The version one run gets: a split picks by ``subject`` (deterministic) or at
        random; anything else is its one version."""
        if self.split is None:
            return self.version
        assert self.label is not None
        entry = choose_variant(self.prompt.name, self.label, self.split, subject)
        return self.versions[entry.version]


# --- resolving ------------------------------------------------------------------------------


async def resolve(
    db: Database, name: str, *, label: str | None = None, version: int | None = None
) -> Resolution:
    """``resolve_with`` on a connection of its own (routes that read only this)."""
    async with db.ledger() as ex:
        return await resolve_with(ex, name, label=label, version=version)


async def resolve_single(
    db: Database, name: str, *, label: str | None = None, version: int | None = None
) -> tuple[Prompt, PromptVersion | None]:
    """The prompt and the one version ``label`` or ``version`` names (``GET
    /v1/prompts/{name}?label=``); None for ``active`` on a prompt with only drafts.

    Raises:
        ValidationFailed: as ``resolve_with``, and for a split label (it names no one version).
        NotFound: as ``resolve_with``.
    """
    resolved = await resolve(db, name, label=label, version=version)
    if resolved.split is not None:
        raise ValidationFailed(
            f"label '{label}' is a traffic split, not one version: see it with "
            f"GET /v1/prompts/{name}/labels, or run it with `label` (and `subject`)",
            details={"label": label},
        )
    return resolved.prompt, resolved.version


async def resolve_with(
    ex: Executor, name: str, *, label: str | None = None, version: int | None = None
) -> Resolution:
    """Resolve ``label`` (default ``active``) or ``version`` of prompt ``name``.

    One statement, two for a split (its versions).

    Raises:
        ValidationFailed: both ``label`` and ``version`` given.
        NotFound: no such prompt, version or label.
    """
    if label is not None and version is not None:
        raise ValidationFailed(
            "give either `label` or `version`, not both", details={"label": label}
        )
    if version is not None:
        found = await ledger.get_prompt_with_version(ex, name, version)
        if found is None:
            raise prompts.prompt_not_found(name)
        prompt, named = found
        if named is None:
            raise prompts.version_not_found(prompt, version)
        return Resolution(prompt, None, named, None, {version: named})
    if label is None or label == ACTIVE_LABEL:
        active = await ledger.get_prompt_with_active_version(ex, name)
        if active is None:
            raise prompts.prompt_not_found(name)
        prompt, current = active
        versions = {current.version_number: current} if current else {}
        return Resolution(prompt, ACTIVE_LABEL, current, None, versions)
    with_label = await ledger.get_prompt_with_label(ex, name, label)
    if with_label is None:
        raise prompts.prompt_not_found(name)
    prompt, row, pointed = with_label
    if row is None:
        raise label_not_found(prompt, label)
    if row.split is None:
        assert pointed is not None  # a foreign key keeps the version there
        return Resolution(prompt, label, pointed, None, {pointed.version_number: pointed})
    split = _split_of(row.split)
    versions = await ledger.get_versions_by_numbers(ex, prompt.id, [e.version for e in split])
    return Resolution(prompt, label, None, split, versions)


def choose_in_split(
    name: str, label: str, split: Sequence[Mapping[str, int]], subject: str | None
) -> int:
    """The version number a run of split ``label`` (as stored) gets for ``subject``."""
    return choose_variant(name, label, _split_of(split), subject).version


def label_not_found(prompt: Prompt, label: str) -> NotFound:
    return NotFound(
        f"prompt '{prompt.name}' has no label '{label}'",
        details={"name": prompt.name, "label": label},
    )


# --- reading and moving labels --------------------------------------------------------------


async def list_labels(session: AsyncSession, name: str) -> list[LabelState]:
    """``active`` first (when the prompt has an active version), then the others by name."""
    prompt = await prompts.get_prompt(session, name)
    states: list[LabelState] = []
    active = await prompts.get_active_version(session, prompt)
    if active is not None:
        moved = await repo.get_last_event_time(session, prompt.id, EventType.ACTIVATED)
        states.append(
            LabelState(ACTIVE_LABEL, active.version_number, None, moved or prompt.updated_at)
        )
    states += [_state(row) for row in await repo.list_labels(session, prompt.id)]
    return states


async def set_label(
    session: AsyncSession,
    name: str,
    label: str,
    *,
    version: int | None = None,
    split: Sequence[SplitEntry] | None = None,
) -> tuple[LabelState, bool]:
    """Point ``label`` at ``version`` or at ``split``; True when the label is new.

    Moving ``active`` is ``services.prompts.activate`` (SPEC §4: one version, an
    ``activated`` event, full mode only). Pointing a label where it already points changes
    nothing and logs nothing. Split shape (2-10 entries, distinct versions, weights 1-100
    summing to 100) is the request schema's; that its versions exist is checked here.

    Raises:
        NotFound: no such prompt, or (``version``) no such version.
        ValidationFailed: ``active`` given a split; a split naming a version that does not
            exist.
        ModeMismatch: ``active`` of a tracking-mode prompt (its code owns the active version).
    """
    if (version is None) == (split is None):
        raise ValidationFailed("give either `version` or `split`", details={"label": label})
    if label == ACTIVE_LABEL:
        if version is None:
            raise ValidationFailed(
                "the label 'active' is the one active version (SPEC §4); it cannot be a "
                "split: put the split on another label",
                details={"label": label},
            )
        activated, active = await prompts.activate(session, name, version)
        moved = await repo.get_last_event_time(session, activated.id, EventType.ACTIVATED)
        state = LabelState(ACTIVE_LABEL, active.version_number, None, moved or utcnow())
        return state, False

    locked = await repo.lock_prompt(session, name)
    if locked is None:
        raise prompts.prompt_not_found(name)
    prompt = locked
    target_split: Split | None = None
    if version is not None:
        await prompts.get_version(session, prompt, version)
    else:
        assert split is not None
        target_split = tuple(split)
        wanted = [e.version for e in target_split]
        existing = await repo.get_version_numbers(session, prompt.id, wanted)
        missing = [n for n in wanted if n not in existing]
        if missing:
            raise ValidationFailed(
                f"prompt '{name}' has no version {', '.join(map(str, missing))}: a split "
                "names existing versions",
                details={"name": name, "missing_versions": missing},
            )

    row = await repo.get_label(session, prompt.id, label)
    previous = _state(row) if row is not None else None
    if previous is not None and (previous.version_number, previous.split) == (
        version,
        target_split,
    ):
        return previous, False
    now = utcnow()
    if row is None:
        row = PromptLabel(prompt_id=prompt.id, label=label)
        session.add(row)
    row.version_number = version
    row.split = _split_json(target_split) if target_split is not None else None
    row.updated_at = now
    _log_move(session, prompt, label, version, target_split, previous)
    await session.flush()
    return _state(row), previous is None


async def delete_label(session: AsyncSession, name: str, label: str) -> None:
    """Remove a label; logged as a ``label_moved`` to nowhere (version and split null).

    Raises:
        ValidationFailed: ``active`` (a prompt's active version is moved, never removed).
        NotFound: no such prompt or label.
    """
    if label == ACTIVE_LABEL:
        raise ValidationFailed(
            "the label 'active' cannot be deleted; move it to another version instead",
            details={"label": label},
        )
    prompt = await repo.lock_prompt(session, name)
    if prompt is None:
        raise prompts.prompt_not_found(name)
    row = await repo.get_label(session, prompt.id, label)
    if row is None:
        raise label_not_found(prompt, label)
    previous = _state(row)
    await session.delete(row)
    _log_move(session, prompt, label, None, None, previous)
    await session.flush()


def _log_move(
    session: AsyncSession,
    prompt: Prompt,
    label: str,
    version: int | None,
    split: Split | None,
    previous: LabelState | None,
) -> None:
    repo.add_event(
        session,
        prompt.id,
        EventType.LABEL_MOVED,
        version_number=version,
        previous_version_number=previous.version_number if previous else None,
        details={
            "label": label,
            "split": _split_json(split) if split is not None else None,
            "previous": _target_json(previous) if previous else None,
        },
    )


def _target_json(state: LabelState) -> dict[str, Any]:
    if state.split is not None:
        return {"split": _split_json(state.split)}
    return {"version_number": state.version_number}


def _split_json(split: Split) -> list[dict[str, int]]:
    return [{"version": e.version, "weight": e.weight} for e in split]


def _split_of(value: Sequence[Mapping[str, int]]) -> Split:
    return tuple(SplitEntry(int(e["version"]), int(e["weight"])) for e in value)


def _state(row: PromptLabel) -> LabelState:
    split = _split_of(row.split) if row.split is not None else None
    return LabelState(row.label, row.version_number, split, row.updated_at)
