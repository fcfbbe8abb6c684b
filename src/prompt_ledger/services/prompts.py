"""Versioning rules (SPEC §4): content-addressed, immutable versions and one moving pointer.

Every write to a prompt's versions goes through ``save_version`` or ``activate``, with the
prompt row locked, so the rules live here and nowhere else.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db import ledger
from prompt_ledger.db import repositories as repo
from prompt_ledger.db.session import Database
from prompt_ledger.db.tables import (
    EventType,
    Prompt,
    PromptEvent,
    PromptMode,
    PromptVersion,
    VersionStatus,
    VersionType,
    utcnow,
)
from prompt_ledger.errors import ModeMismatch, NotFound, ValidationFailed
from prompt_ledger.services import rendering, variables

# The right route for each mode, quoted in every mode-mismatch message.
SAVE_ROUTE = {
    PromptMode.FULL: "PUT /v1/prompts/{name}",
    PromptMode.TRACKING: "POST /v1/prompts/register-code",
}


@dataclass(frozen=True, slots=True)
class VersionContent:
    """What a version is (SPEC §9.1), as validated by the request schemas: a ``text``
    version's template or a ``chat`` version's messages, and the optional ``config`` and
    ``variables_schema``. ``None`` means absent; an empty ``config`` counts as absent."""

    type: VersionType = VersionType.TEXT
    template_source: str | None = None
    messages: list[dict[str, Any]] | None = None
    config: dict[str, Any] | None = None
    variables_schema: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not self.config:
            object.__setattr__(self, "config", None)

    @property
    def is_plain_text(self) -> bool:
        """A text version with no config and no schema: addressed by its bytes (SPEC §4)."""
        return (
            self.type == VersionType.TEXT and self.config is None and self.variables_schema is None
        )


def checksum_of(content: VersionContent | str) -> str:
    """The content address of a version: the one place checksums are computed.

    Plain text (a ``str``, or text with no config and no schema) is the sha256 of its exact
    UTF-8 bytes, with no normalisation, so whitespace and case count and tracking mode's
    ``template_hash`` stays the sha256 of the text. Anything else is the sha256 of the RFC 8785
    canonical JSON of ``{type, template_source | messages, config?, variables_schema?}``,
    absent members left out (never null).
    """
    if isinstance(content, str):
        content = VersionContent(template_source=content)
    if content.is_plain_text:
        assert content.template_source is not None
        return hashlib.sha256(content.template_source.encode("utf-8")).hexdigest()
    document: dict[str, Any] = {"type": content.type.value}
    if content.type == VersionType.TEXT:
        document["template_source"] = content.template_source
    else:
        document["messages"] = content.messages
    if content.config is not None:
        document["config"] = content.config
    if content.variables_schema is not None:
        document["variables_schema"] = content.variables_schema
    try:
        canonical = rfc8785.dumps(document)
    except rfc8785.CanonicalizationError as exc:  # e.g. an integer beyond 2**53 in a schema
        raise ValidationFailed(
            f"the version cannot be content-addressed (RFC 8785): {exc}",
            details={"field": "variables_schema" if content.variables_schema else "config"},
        ) from None
    return hashlib.sha256(canonical).hexdigest()


def _variables_of(content: VersionContent) -> list[str]:
    """Validate the templates and return the sorted names of the variables the version
    uses (a chat's placeholder name included). Blocking: compiles every template."""
    if content.type == VersionType.TEXT:
        assert content.template_source is not None
        return rendering.template_variables(content.template_source)
    names: set[str] = set()
    for message in content.messages or []:
        if message.get("type") == "placeholder":
            names.add(str(message["name"]))
        else:
            names.update(rendering.template_variables(str(message["content"])))
    return sorted(names)


@dataclass(frozen=True, slots=True)
class SaveResult:
    prompt: Prompt
    version: PromptVersion
    created: bool  # a new version was written
    prompt_created: bool
    # The version that was active before this save (None for a new prompt or none active).
    previous_active: int | None


def mode_mismatch(prompt: Prompt, *, wanted: PromptMode, action: str) -> ModeMismatch:
    route = SAVE_ROUTE[prompt.mode].format(name=prompt.name)
    return ModeMismatch(
        f"prompt '{prompt.name}' is in {prompt.mode} mode and cannot be {action} as a "
        f"{wanted} prompt; use {route}, or convert it with POST /v1/prompts/{prompt.name}:convert",
        details={"prompt_mode": prompt.mode.value, "route": route},
    )


def prompt_not_found(name: str) -> NotFound:
    return NotFound(f"prompt '{name}' does not exist", details={"name": name})


async def save_version(
    session: AsyncSession,
    name: str,
    content: VersionContent | str,
    *,
    mode: PromptMode,
    description: str | None = None,
    metadata: dict[str, Any] | None = None,
    activate: bool = True,
) -> SaveResult:
    """Create the prompt or add a version; identical content reuses its version.

    ``content`` is the version (a ``str`` is a plain text version).

    Raises:
        InvalidTemplate: a template is not valid Jinja2 (checked before any write).
        ValidationFailed: the variables_schema is not a valid JSON Schema.
        ModeMismatch: the prompt exists in the other mode.
    """
    if isinstance(content, str):
        content = VersionContent(template_source=content)
    if content.variables_schema is not None:
        variables.check_schema(content.variables_schema)
    # Compiling a large template can take a while: keep it off the event loop.
    names = await asyncio.to_thread(_variables_of, content)
    checksum = checksum_of(content)
    prompt, prompt_created = await repo.lock_or_create_prompt(
        session, name, mode=mode, description=description
    )
    if prompt.mode != mode:
        raise mode_mismatch(prompt, wanted=mode, action="saved")
    if prompt_created:
        repo.add_event(session, prompt.id, EventType.CREATED)
    elif description is not None and description != prompt.description:
        prompt.description = description
        prompt.updated_at = utcnow()
    previous_active = await _active_number(session, prompt)

    version = await repo.get_version_by_checksum(session, prompt.id, checksum)
    created = version is None
    if version is None:
        number = await repo.get_max_version_number(session, prompt.id) + 1
        version = PromptVersion(
            prompt_id=prompt.id,
            version_number=number,
            type=content.type,
            template_source=content.template_source or "",
            messages=content.messages,
            config=content.config,
            variables_schema=content.variables_schema,
            checksum=checksum,
            variables=names,
            status=VersionStatus.DRAFT,
            metadata_=metadata or {},
            created_at=utcnow(),
        )
        session.add(version)
        await session.flush()
        repo.add_event(session, prompt.id, EventType.VERSION_CREATED, version_number=number)
    if activate:
        await _move_pointer(session, prompt, version)
    return SaveResult(prompt, version, created, prompt_created, previous_active)


async def activate(session: AsyncSession, name: str, number: int) -> tuple[Prompt, PromptVersion]:
    """Move a full-mode prompt's active pointer to an existing version (rollback)."""
    prompt = await repo.lock_prompt(session, name)
    if prompt is None:
        raise prompt_not_found(name)
    if prompt.mode != PromptMode.FULL:
        raise ModeMismatch(
            f"prompt '{name}' is in tracking mode: its active version follows the code; "
            "register the wanted text with POST /v1/prompts/register-code, or convert the "
            f"prompt with POST /v1/prompts/{name}:convert",
            details={"prompt_mode": prompt.mode.value, "route": SAVE_ROUTE[prompt.mode]},
        )
    version = await get_version(session, prompt, number)
    await _move_pointer(session, prompt, version)
    return prompt, version


async def get_prompt(session: AsyncSession, name: str) -> Prompt:
    prompt = await repo.get_prompt(session, name)
    if prompt is None:
        raise prompt_not_found(name)
    return prompt


async def get_version(session: AsyncSession, prompt: Prompt, number: int) -> PromptVersion:
    version = await repo.get_version(session, prompt.id, number)
    if version is None:
        raise version_not_found(prompt, number)
    return version


def version_not_found(prompt: Prompt, number: int) -> NotFound:
    return NotFound(
        f"prompt '{prompt.name}' has no version {number}",
        details={"name": prompt.name, "version": number},
    )


async def get_with_active_version(db: Database, name: str) -> tuple[Prompt, PromptVersion | None]:
    """The prompt and its active version, read by one statement (the registry hot path)."""
    async with db.ledger() as ex:
        found = await ledger.get_prompt_with_active_version(ex, name)
    if found is None:
        raise prompt_not_found(name)
    return found


async def get_active_version(session: AsyncSession, prompt: Prompt) -> PromptVersion | None:
    if prompt.active_version_id is None:
        return None
    return await repo.get_version_by_id(session, prompt.active_version_id)


async def list_versions(session: AsyncSession, name: str) -> Sequence[PromptVersion]:
    prompt = await get_prompt(session, name)
    return await repo.list_versions(session, prompt.id)


async def list_events(session: AsyncSession, name: str) -> Sequence[PromptEvent]:
    prompt = await get_prompt(session, name)
    return await repo.list_events(session, prompt.id)


async def list_prompts(
    session: AsyncSession,
    *,
    mode: PromptMode | None,
    after_name: str | None,
    limit: int,
    name_contains: str | None = None,
) -> tuple[Sequence[tuple[Prompt, PromptVersion | None]], str | None]:
    """One page of prompts by name, and the name to continue after (None on the last page)."""
    rows = await repo.list_prompts_with_active_version(
        session, mode=mode, after_name=after_name, limit=limit + 1, name_contains=name_contains
    )
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1][0].name
    return rows, None


async def _active_number(session: AsyncSession, prompt: Prompt) -> int | None:
    active = await get_active_version(session, prompt)
    return active.version_number if active else None


async def _move_pointer(session: AsyncSession, prompt: Prompt, version: PromptVersion) -> None:
    """Make ``version`` the one active version; the one it replaces becomes deprecated."""
    if prompt.active_version_id == version.id:
        return
    previous = await get_active_version(session, prompt)
    if previous is not None:
        previous.status = VersionStatus.DEPRECATED
    version.status = VersionStatus.ACTIVE
    prompt.active_version_id = version.id
    prompt.updated_at = utcnow()
    repo.add_event(
        session,
        prompt.id,
        EventType.ACTIVATED,
        version_number=version.version_number,
        previous_version_number=previous.version_number if previous else None,
    )
