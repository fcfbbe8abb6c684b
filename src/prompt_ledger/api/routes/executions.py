"""Execution routes (SPEC §6): run, submit, read, list, cancel."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status

from prompt_ledger.api.deps import RuntimeDep, SessionDep
from prompt_ledger.api.errors import error_responses
from prompt_ledger.api.streaming import REPLAYED, stream_response
from prompt_ledger.db.tables import ExecutionMode, ExecutionStatus, PromptMode
from prompt_ledger.errors import BadRequest
from prompt_ledger.schemas.common import PromptName
from prompt_ledger.schemas.executions import (
    ExecutionInput,
    ExecutionOut,
    ExecutionPage,
    RunRequest,
    SubmitResponse,
)
from prompt_ledger.services import executions as service
from prompt_ledger.services import streaming
from prompt_ledger.services.executions import ExecutionRecord, ExecutionRequest, RunInput
from prompt_ledger.services.idempotency import parse_key

router = APIRouter(prefix="/v1/executions", tags=["executions"])

IdempotencyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", description="1-255 printable ASCII; replays the first answer"),
]


# Body fields added after idempotency keys were in use (SPEC §9.2). Left out of the
# fingerprint when unused, so a request sent before an upgrade and retried after it still
# replays instead of being 422 idempotency_key_reused.
ADDED_FIELDS = ("label", "subject")


# How the answer is delivered, never part of the fingerprint: a streamed run retried without
# ``stream`` (or the other way round) replays it (docs/decisions.md).
DELIVERY_FIELDS = {"stream"}


def _unused_added_fields(body: ExecutionInput) -> set[str]:
    return {name for name in ADDED_FIELDS if getattr(body, name) is None} | DELIVERY_FIELDS


def execution_request(
    request: Request,
    body: ExecutionInput,
    key: str | None,
    *,
    prompt_name: str,
    prompt_mode: PromptMode,
    execution_mode: ExecutionMode,
) -> ExecutionRequest:
    """Parse the shared parts of every execute-style route into a service request."""
    return ExecutionRequest(
        prompt_name=prompt_name,
        prompt_mode=prompt_mode,
        execution_mode=execution_mode,
        input=RunInput(
            model_name=body.model_name,
            provider=body.given_provider,
            version=body.version,
            label=body.label,
            subject=body.subject,
            variables=body.variables,
            params=body.params.model_dump(exclude_none=True),
            metadata=body.metadata,
        ),
        stream=body.stream,
        idempotency=None
        if key is None  # the fingerprint (a JSON dump of the body) only when there is a key
        else parse_key(
            key,
            method=request.method,
            path=request.url.path,
            body=body.model_dump(mode="json", exclude=_unused_added_fields(body)),
        ),
    )


def full_mode_request(
    request: Request, body: RunRequest, key: str | None, execution_mode: ExecutionMode
) -> ExecutionRequest:
    return execution_request(
        request,
        body,
        key,
        prompt_name=body.prompt_name,
        prompt_mode=PromptMode.FULL,
        execution_mode=execution_mode,
    )


def sync_response(record: ExecutionRecord, response: Response) -> ExecutionOut:
    if record.replayed:
        response.headers.update(REPLAYED)
    return ExecutionOut.of(record)


def async_response(record: ExecutionRecord) -> Response:
    body = SubmitResponse(execution_id=record.execution.id, status=record.execution.status)
    return Response(
        body.model_dump_json(),  # pydantic's serializer: no dict, no json.dumps
        status_code=status.HTTP_202_ACCEPTED,
        media_type="application/json",
        headers=REPLAYED if record.replayed else None,
    )


@router.post(
    ":run",
    response_model=ExecutionOut,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "with `stream: true`"},
        **error_responses(400, 404, 409, 413),
    },
)
async def run(
    request: Request,
    body: RunRequest,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyHeader = None,
) -> ExecutionOut | Response:
    """Run a full-mode prompt now and answer with the recorded execution; with
    ``stream: true``, as Server-Sent Events (SPEC §10.1)."""
    req = full_mode_request(request, body, idempotency_key, ExecutionMode.SYNC)
    if body.stream:
        return stream_response(await streaming.start_stream(runtime, req))
    return sync_response(await service.run_sync(runtime, req), response)


@router.post(
    ":submit",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=SubmitResponse,
    responses=error_responses(400, 404, 409, 413),
)
async def submit(
    request: Request,
    body: RunRequest,
    runtime: RuntimeDep,
    idempotency_key: IdempotencyHeader = None,
) -> Response:
    """Queue a full-mode prompt for the workers; poll the execution by its id."""
    req = full_mode_request(request, body, idempotency_key, ExecutionMode.ASYNC)
    return async_response(await service.submit(runtime, req))


def encode_cursor(position: tuple[datetime, uuid.UUID]) -> str:
    raw = f"{position[0].isoformat()}|{position[1]}"
    return base64.urlsafe_b64encode(raw.encode()).decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.b64decode(cursor.encode(), altchars=b"-_", validate=True).decode()
        created_at, execution_id = raw.split("|")
        return datetime.fromisoformat(created_at), uuid.UUID(execution_id)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadRequest("cursor is not one this API returned", details={"cursor": cursor}) from exc


@router.get("", response_model=ExecutionPage, responses=error_responses(400))
async def list_executions(
    session: SessionDep,
    prompt_name: PromptName | None = None,
    status: ExecutionStatus | None = None,
    execution_mode: ExecutionMode | None = None,
    prompt_mode: PromptMode | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> ExecutionPage:
    """Executions, newest first, filtered; follow ``next_cursor`` for the next page."""
    records, last = await service.list_page(
        session,
        prompt_name=prompt_name,
        status=status,
        execution_mode=execution_mode,
        prompt_mode=prompt_mode,
        since=since,
        until=until,
        before=decode_cursor(cursor) if cursor else None,
        limit=limit,
    )
    return ExecutionPage(
        items=[ExecutionOut.of(r) for r in records],
        next_cursor=encode_cursor(last) if last else None,
    )


@router.get("/{execution_id}", response_model=ExecutionOut, responses=error_responses(404))
async def get_execution(execution_id: uuid.UUID, runtime: RuntimeDep) -> ExecutionOut:
    """One execution as the ledger has it now."""
    return ExecutionOut.of(await service.get(runtime, execution_id))


@router.post(
    "/{execution_id}:cancel", response_model=ExecutionOut, responses=error_responses(404, 409)
)
async def cancel_execution(execution_id: uuid.UUID, runtime: RuntimeDep) -> ExecutionOut:
    """Cancel a queued execution: it will never reach the provider."""
    return ExecutionOut.of(await service.cancel(runtime, execution_id))
