"""Labels and traffic splits (SPEC §9.2) and the version diff (§9.4): thin handlers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from prompt_ledger.api.deps import SessionDep
from prompt_ledger.api.errors import error_responses
from prompt_ledger.api.routes.prompts import NameParam
from prompt_ledger.db.tables import LABEL_PATTERN
from prompt_ledger.schemas.labels import (
    DiffOut,
    LabelList,
    LabelOut,
    SetLabelRequest,
    VersionNumber,
)
from prompt_ledger.services import diff, labels
from prompt_ledger.services.labels import SplitEntry

router = APIRouter(prefix="/v1/prompts", tags=["labels"])

LabelParam = Annotated[str, Path(pattern=LABEL_PATTERN, description="label name")]


@router.get("/{name}/labels", response_model=LabelList, responses=error_responses(404))
async def list_labels(name: NameParam, session: SessionDep) -> LabelList:
    """Every label of a prompt and where it points: ``active`` first, then by name."""
    states = await labels.list_labels(session, name)
    return LabelList(items=[LabelOut.of(s) for s in states])


@router.put(
    "/{name}/labels/{label}",
    response_model=LabelOut,
    responses={201: {"model": LabelOut}, **error_responses(404, 409, 413)},
)
async def set_label(
    name: NameParam,
    label: LabelParam,
    body: SetLabelRequest,
    session: SessionDep,
    response: Response,
) -> LabelOut:
    """Point a label at a version or a traffic split (201 for a new label)."""
    split = [SplitEntry(e.version, e.weight) for e in body.split] if body.split else None
    state, created = await labels.set_label(session, name, label, version=body.version, split=split)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    return LabelOut.of(state)


@router.delete(
    "/{name}/labels/{label}",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=error_responses(404),
)
async def delete_label(name: NameParam, label: LabelParam, session: SessionDep) -> Response:
    """Remove a label (not ``active``: move it instead)."""
    await labels.delete_label(session, name, label)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{name}/diff", response_model=DiffOut, responses=error_responses(404))
async def diff_versions(
    name: NameParam,
    session: SessionDep,
    from_: Annotated[VersionNumber, Query(alias="from", description="the older version")],
    to: Annotated[VersionNumber, Query(description="the newer version")],
) -> DiffOut:
    """The unified diff of two versions' templates and which parts changed."""
    return DiffOut.of(await diff.diff_versions(session, name, from_, to))
