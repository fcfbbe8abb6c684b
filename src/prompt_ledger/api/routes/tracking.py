"""Tracking-mode routes, history and mode conversion (SPEC §6)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from prompt_ledger.api.deps import RuntimeDep, SessionDep
from prompt_ledger.api.errors import error_responses
from prompt_ledger.api.routes.executions import (
    IdempotencyHeader,
    async_response,
    execution_request,
    sync_response,
)
from prompt_ledger.api.routes.prompts import NameParam
from prompt_ledger.api.streaming import stream_response
from prompt_ledger.db.tables import ExecutionMode, PromptMode
from prompt_ledger.schemas.executions import ExecutionOut, SubmitResponse, TrackedExecuteRequest
from prompt_ledger.schemas.prompts import PromptOut
from prompt_ledger.schemas.tracking import (
    ConvertRequest,
    HistoryOut,
    HistoryVersion,
    RegisterCodeRequest,
    RegisterCodeResponse,
    RegistrationOut,
)
from prompt_ledger.services import executions, prompts, streaming, tracking
from prompt_ledger.services.tracking import CodePrompt

router = APIRouter(prefix="/v1/prompts", tags=["tracking"])


@router.post(
    "/register-code", response_model=RegisterCodeResponse, responses=error_responses(409, 413)
)
async def register_code(body: RegisterCodeRequest, session: SessionDep) -> RegisterCodeResponse:
    """Register prompts owned by application code; the server versions changed text."""
    results = await tracking.register_code(
        session,
        [
            CodePrompt(p.name, p.content(), p.template_hash, p.description, p.metadata)
            for p in body.prompts
        ],
    )
    return RegisterCodeResponse(
        results=[
            RegistrationOut(
                name=r.name,
                version_number=r.version_number,
                checksum=r.checksum,
                change=r.change,
                previous_version_number=r.previous_version_number,
            )
            for r in results
        ]
    )


@router.post(
    "/{name}/execute",
    response_model=ExecutionOut,
    responses={202: {"model": SubmitResponse}, **error_responses(400, 404, 409, 413)},
)
async def execute(
    name: NameParam,
    request: Request,
    body: TrackedExecuteRequest,
    runtime: RuntimeDep,
    response: Response,
    idempotency_key: IdempotencyHeader = None,
) -> ExecutionOut | Response:
    """Run a tracking-mode prompt: ``mode: sync`` answers the execution, ``async`` an id."""
    req = execution_request(
        request,
        body,
        idempotency_key,
        prompt_name=name,
        prompt_mode=PromptMode.TRACKING,
        execution_mode=body.mode,
    )
    if body.mode == ExecutionMode.ASYNC:
        return async_response(await executions.submit(runtime, req))
    if body.stream:
        return stream_response(await streaming.start_stream(runtime, req))
    return sync_response(await executions.run_sync(runtime, req), response)


@router.get("/{name}/history", response_model=HistoryOut, responses=error_responses(404, 409))
async def history(
    name: NameParam, session: SessionDep, mode: Annotated[PromptMode | None, Query()] = None
) -> HistoryOut:
    """Versions newest first, each with its execution count and last execution time."""
    prompt, versions = await tracking.history(session, name, mode=mode)
    return HistoryOut(
        name=prompt.name,
        mode=prompt.mode,
        versions=[
            HistoryVersion(
                version_number=h.version.version_number,
                checksum=h.version.checksum,
                template_hash=h.version.checksum,
                status=h.version.status,
                created_at=h.version.created_at,
                execution_count=h.execution_count,
                last_executed_at=h.last_executed_at,
            )
            for h in versions
        ],
    )


@router.post("/{name}:convert", response_model=PromptOut, responses=error_responses(404))
async def convert(name: NameParam, body: ConvertRequest, session: SessionDep) -> PromptOut:
    """Hand a prompt's ownership to the other side, keeping its versions and executions."""
    prompt = await tracking.convert(session, name, body.to)
    return PromptOut.of(prompt, await prompts.get_active_version(session, prompt))
