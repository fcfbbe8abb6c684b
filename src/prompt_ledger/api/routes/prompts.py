"""Full-mode registry routes (SPEC §6): thin handlers over ``services.prompts``."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Response, status

from prompt_ledger.api.conditional import none_match, quote_etag
from prompt_ledger.api.deps import SessionDep, StateDep
from prompt_ledger.api.errors import error_responses
from prompt_ledger.db.tables import PromptMode
from prompt_ledger.errors import BadRequest, NotFound
from prompt_ledger.schemas.common import MAX_INT32, PROMPT_NAME_PATTERN
from prompt_ledger.schemas.labels import LabelName, VersionNumber, split_out
from prompt_ledger.schemas.prompts import (
    EventList,
    EventOut,
    PromptInfo,
    PromptListItem,
    PromptOut,
    PromptPage,
    ResolvedSplit,
    ResolvedVersion,
    SavePromptRequest,
    SavePromptResponse,
    VersionList,
    VersionOut,
)
from prompt_ledger.services import labels
from prompt_ledger.services import prompts as service
from prompt_ledger.services.labels import Resolution

router = APIRouter(prefix="/v1/prompts", tags=["prompts"])

NameParam = Annotated[str, Path(pattern=PROMPT_NAME_PATTERN, description="prompt name")]


def encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode()


def decode_cursor(cursor: str) -> str:
    try:
        name = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("cursor is not one this API returned", details={"cursor": cursor}) from exc
    if not name:
        raise BadRequest("cursor is not one this API returned", details={"cursor": cursor})
    return name


@router.get("", response_model=PromptPage, responses=error_responses(400))
async def list_prompts(
    session: SessionDep,
    mode: PromptMode | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> PromptPage:
    """List prompts by name, one page at a time."""
    after = decode_cursor(cursor) if cursor else None
    rows, last = await service.list_prompts(session, mode=mode, after_name=after, limit=limit)
    return PromptPage(
        items=[PromptListItem.of(prompt, active) for prompt, active in rows],
        next_cursor=encode_cursor(last) if last else None,
    )


@router.put(
    "/{name}",
    response_model=SavePromptResponse,
    responses={201: {"model": SavePromptResponse}, **error_responses(409, 413)},
)
async def save_prompt(
    name: NameParam, body: SavePromptRequest, session: SessionDep, response: Response
) -> SavePromptResponse:
    """Create a full-mode prompt or save a version of it; identical text creates nothing."""
    result = await service.save_version(
        session,
        name,
        body.content(),
        mode=PromptMode.FULL,
        description=body.description,
        metadata=body.metadata,
        activate=body.activate,
    )
    response.status_code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return SavePromptResponse(
        name=result.prompt.name,
        mode=result.prompt.mode,
        description=result.prompt.description,
        version=VersionOut.model_validate(result.version),
        created=result.created,
    )


@router.get("/{name}", response_model=PromptOut, responses=error_responses(404))
async def get_prompt(
    name: NameParam,
    state: StateDep,
    label: Annotated[LabelName | None, Query(description="answer this label's version")] = None,
    version: Annotated[VersionNumber | None, Query(description="answer this version")] = None,
) -> PromptOut:
    """A prompt and its active version (or the version of ``label`` / ``version``)."""
    if label is None and version is None:
        prompt, active = await service.get_with_active_version(state.db, name)
        return PromptOut.of(prompt, active)
    prompt, named = await labels.resolve_single(state.db, name, label=label, version=version)
    return PromptOut.of(prompt, named)


# A version never changes (content addressing), so its answer may be kept for good; a
# label's must be revalidated (the ETag makes that a 304).
IMMUTABLE = "private, max-age=31536000, immutable"
REVALIDATE = "private, no-cache"


@router.get(
    "/{name}/resolve",
    response_model=ResolvedVersion | ResolvedSplit,
    responses={
        304: {"description": "Not Modified: `If-None-Match` names the current ETag"},
        **error_responses(404),
    },
)
async def resolve_prompt(
    name: NameParam,
    state: StateDep,
    response: Response,
    label: Annotated[LabelName | None, Query(description="default `active`")] = None,
    version: Annotated[VersionNumber | None, Query(description="a version number")] = None,
    if_none_match: Annotated[str | None, Header(description="an ETag this answered")] = None,
) -> ResolvedVersion | ResolvedSplit | Response:
    """What a label (default ``active``) or version number serves, with an ``ETag``; a
    conditional GET naming the current ETag is 304 with no body (SPEC §9.3)."""
    resolved = await labels.resolve(state.db, name, label=label, version=version)
    body = _resolution_body(resolved)
    etag = quote_etag(_resolution_tag(resolved))
    headers = {"ETag": etag, "Cache-Control": IMMUTABLE if version is not None else REVALIDATE}
    if none_match(if_none_match, etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response.headers.update(headers)
    return body


def _resolution_body(resolved: Resolution) -> ResolvedVersion | ResolvedSplit:
    info = PromptInfo.of(resolved.prompt)
    if resolved.split is not None:
        assert resolved.label is not None
        return ResolvedSplit(
            prompt=info,
            label=resolved.label,
            split=split_out(resolved.split) or [],
            versions={n: VersionOut.model_validate(v) for n, v in resolved.versions.items()},
        )
    if resolved.version is None:
        raise NotFound(
            f"prompt '{resolved.prompt.name}' has no active version (only drafts)",
            details={"name": resolved.prompt.name, "label": resolved.label},
        )
    version = VersionOut.model_validate(resolved.version)
    return ResolvedVersion(**version.model_dump(), prompt=info, label=resolved.label)


def _resolution_tag(resolved: Resolution) -> str:
    """One version: its checksum. A split: a digest of its entries and their checksums, so
    moving the split or any of its weights changes the tag."""
    if resolved.split is None:
        assert resolved.version is not None
        return resolved.version.checksum
    parts = [
        f"{e.version}:{e.weight}:{resolved.versions[e.version].checksum}" for e in resolved.split
    ]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


@router.get("/{name}/versions", response_model=VersionList, responses=error_responses(404))
async def list_versions(name: NameParam, session: SessionDep) -> VersionList:
    """Every version of a prompt, newest first."""
    versions = await service.list_versions(session, name)
    return VersionList(items=[VersionOut.model_validate(v) for v in versions])


@router.post(
    "/{name}/versions/{number}:activate",
    response_model=PromptOut,
    responses=error_responses(404, 409),
)
async def activate_version(
    name: NameParam, number: Annotated[int, Path(ge=1, le=MAX_INT32)], session: SessionDep
) -> PromptOut:
    """Make an existing version the active one (rollback); full mode only."""
    prompt, version = await service.activate(session, name, number)
    return PromptOut.of(prompt, version)


@router.get("/{name}/events", response_model=EventList, responses=error_responses(404))
async def list_events(name: NameParam, session: SessionDep) -> EventList:
    """The prompt's history, oldest first: which version was active when."""
    events = await service.list_events(session, name)
    return EventList(items=[EventOut.of(e) for e in events])
