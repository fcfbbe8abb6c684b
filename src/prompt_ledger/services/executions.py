"""The execution ledger: creating rows, every status transition, retries and recovery.

Statuses move only here:
    sync:  (created) running → succeeded | failed
    async: (created) queued → running → succeeded | failed, or → queued again (retry);
           queued → canceled; running (worker lost) → queued | failed (sweeper)
Each transition is a conditional UPDATE, so duplicate deliveries and late workers change
nothing. No transaction is open while a provider is called.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, cast

from sqlalchemy.ext.asyncio import AsyncSession
from uuid_utils.compat import uuid7

from prompt_ledger.config import Settings
from prompt_ledger.db import ledger
from prompt_ledger.db import repositories as repo
from prompt_ledger.db.executor import Executor
from prompt_ledger.db.session import Database
from prompt_ledger.db.tables import (
    ACTIVE_LABEL,
    FINAL_STATUSES,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    Model,
    Prompt,
    PromptMode,
    PromptVersion,
    ProviderName,
    VersionType,
    utcnow,
)
from prompt_ledger.errors import (
    ModeMismatch,
    NotCancelable,
    NotFound,
    UnknownModel,
    ValidationFailed,
)
from prompt_ledger.logging import get_logger
from prompt_ledger.providers.base import (
    MappedParams,
    Provider,
    ProviderError,
    ProviderResult,
)
from prompt_ledger.services import (
    analytics,
    costs,
    idempotency,
    labels,
    prompts,
    rendering,
    variables,
)
from prompt_ledger.services.idempotency import IdempotencyKey

log = get_logger("prompt_ledger.executions")

MAX_RESPONSE_BYTES = 512_000
EXECUTE_ROUTE = {
    PromptMode.FULL: "POST /v1/executions:run or POST /v1/executions:submit",
    PromptMode.TRACKING: "POST /v1/prompts/{name}/execute",
}


class Dispatcher(Protocol):
    """Hands execution ids to whatever runs them (Celery, or the in-process worker)."""

    async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None: ...


@dataclass(slots=True)
class Runtime:
    """What running executions needs from the process; built once at start-up."""

    db: Database
    providers: Mapping[ProviderName, Provider]
    settings: Settings
    dispatcher: Dispatcher

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.settings.execution_retry_delays)


@dataclass(frozen=True, slots=True)
class RunInput:
    """What to run, as every execute-style route received it (already validated).

    ``model_name`` and ``provider`` may be None: the version config's, then (provider) openai.
    """

    model_name: str | None = None
    provider: ProviderName | None = None
    version: int | None = None
    label: str | None = None  # instead of ``version`` (SPEC §9.2)
    subject: str | None = None  # picks a split label's variant deterministically
    variables: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # only the parameters given
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExecutionRequest:
    prompt_name: str
    prompt_mode: PromptMode  # the mode of the route it came through
    execution_mode: ExecutionMode
    input: RunInput
    idempotency: IdempotencyKey | None = None
    stream: bool = False  # SPEC §10.1: sync runs only, on a model with supports_streaming


@dataclass(slots=True)
class ExecutionRecord:
    """An execution and what its API view names: prompt, version, model."""

    execution: Execution
    prompt: Prompt
    version: PromptVersion
    model: Model
    replayed: bool = False


# --- creating ---------------------------------------------------------------------------


async def run_sync(rt: Runtime, request: ExecutionRequest) -> ExecutionRecord:
    """Render, record (``running``), call the provider once, record the outcome."""
    record, mapped = await create(rt, request)
    if mapped is None:  # replayed
        return record
    values, _ = await _attempt(rt, record.model, record.version, record.execution, mapped)
    await record_outcome(rt, record, values)
    return record


async def record_outcome(rt: Runtime, record: ExecutionRecord, values: dict[str, Any]) -> None:
    """Write a sync run's outcome (plain or streamed) and update ``record`` to what the
    ledger holds: the row as written, or, when the sweeper recovered it meanwhile, as it
    reads now."""
    execution = record.execution
    if not await _write_attempt(rt.db, execution, values):
        async with rt.db.ledger() as ex:
            fresh = await ledger.get_execution(ex, execution.id)
        assert fresh is not None
        record.execution = fresh[0]
        return
    for name, value in values.items():
        setattr(execution, name, value)
    _log_finished(record)


async def submit(rt: Runtime, request: ExecutionRequest) -> ExecutionRecord:
    """Commit a ``queued`` row, then publish its id (never before the commit)."""
    record, _ = await create(rt, request)
    if not record.replayed:
        await _publish(rt, record.execution.id)
    return record


async def create(
    rt: Runtime, request: ExecutionRequest
) -> tuple[ExecutionRecord, MappedParams | None]:
    """Validate and render everything, then insert the row; or replay an idempotent request.
    Also the params as the provider takes them (mapped once; None for a replay).

    Nothing is written for a request rejected here (validation, render error, size). The
    render runs between two short uses of the database, holding no connection and no lock.
    """
    sync = request.execution_mode == ExecutionMode.SYNC
    key = request.idempotency
    async with rt.db.ledger() as ex:
        if key is not None and (existing := await ledger.get_execution_by_key(ex, key.key)):
            return _replay(existing, key, sync=sync), None
        prompt, version, model, params = await _resolve(ex, request)
    if request.stream and not model.supports_streaming:
        raise ValidationFailed(
            f"model '{model.model_name}' does not support streaming; run it without `stream`",
            details={"field": "stream", "model_name": model.model_name},
        )
    if version.variables_schema is not None:
        variables.validate(version.variables_schema, request.input.variables)
    messages: list[dict[str, str]] | None = None
    if version.type == VersionType.CHAT:
        messages = await rendering.render_messages_async(
            version.messages or [],
            request.input.variables,
            timeout_s=rt.settings.render_timeout_s,
        )
        rendered = messages_as_text(messages)
    else:
        rendered = await rendering.render_async(
            version.template_source,
            request.input.variables,
            timeout_s=rt.settings.render_timeout_s,
        )
    provider = rt.providers[model.provider]
    mapped = provider.map_params(params)
    now = utcnow()
    execution = Execution(
        id=uuid7(),
        prompt_id=prompt.id,
        prompt_version_id=version.id,
        model_id=model.id,
        execution_mode=request.execution_mode,
        status=ExecutionStatus.RUNNING if sync else ExecutionStatus.QUEUED,
        variables=request.input.variables,
        rendered_prompt=rendered,
        rendered_messages=messages,
        params=params,
        params_dropped=mapped.dropped,
        attempts=1 if sync else 0,
        idempotency_key=key.key if key else None,
        idempotency_fingerprint=key.fingerprint if key else None,
        metadata_=request.input.metadata,
        label=request.input.label,
        subject=request.input.subject,
        created_at=now,
        started_at=now if sync else None,
        not_before=None,
        dispatched_at=None if sync else now,
    )
    if not await ledger.insert_execution(rt.db, _column_values(execution)):
        assert key is not None  # only the idempotency key can conflict
        async with rt.db.ledger() as ex:
            existing = await ledger.get_execution_by_key(ex, key.key)
        assert existing is not None
        return _replay(existing, key, sync=sync), None
    return ExecutionRecord(execution, prompt, version, model), mapped


def _replay(
    existing: ledger.ExecutionWithContext, key: IdempotencyKey, *, sync: bool
) -> ExecutionRecord:
    idempotency.check_replay(existing[0], key, sync=sync)
    return ExecutionRecord(*existing, replayed=True)


async def _resolve_target(
    ex: Executor, request: ExecutionRequest
) -> tuple[Prompt, PromptVersion | None, Model | None] | None:
    """The prompt, the version the request names (a number, a label, else the active one)
    and its model: one statement, and one more only for a split label (its variant's
    version, once ``services.labels`` has chosen it). ``active`` is the active pointer."""
    run = request.input
    common: dict[str, Any] = {
        "provider": run.provider,
        "model_name": run.model_name,
        "default_provider": ProviderName.OPENAI,
    }
    if run.label is None or run.label == ACTIVE_LABEL:
        return await ledger.resolve_run(
            ex, request.prompt_name, version_number=run.version, **common
        )
    found = await ledger.resolve_label_run(ex, request.prompt_name, label=run.label, **common)
    if found is None:
        return None
    prompt, row, version, model = found
    if row is None:
        raise labels.label_not_found(prompt, run.label)
    if row.split is None:
        return prompt, version, model
    number = labels.choose_in_split(prompt.name, run.label, row.split, run.subject)
    return await ledger.resolve_run(ex, request.prompt_name, version_number=number, **common)


def messages_as_text(messages: Sequence[Mapping[str, str]]) -> str:
    """A chat's rendered messages as one text (``rendered_prompt``, for search and reading):
    each as ``role: content``, separated by a blank line."""
    return "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)


async def _resolve(
    ex: Executor, request: ExecutionRequest
) -> tuple[Prompt, PromptVersion, Model, dict[str, Any]]:
    """Prompt, version and model in one query (a label is resolved to its version first:
    one more, two for a split), and the merged params (request over the version config's
    over the model's defaults, of which the models table has none yet); errors in the order
    the rules are listed."""
    wanted = request.input.version
    found = await _resolve_target(ex, request)
    if found is None:
        raise prompts.prompt_not_found(request.prompt_name)
    prompt, version, model = found
    if version is not None:
        wanted = version.version_number
    if prompt.mode != request.prompt_mode:
        route = EXECUTE_ROUTE[prompt.mode].format(name=prompt.name)
        raise ModeMismatch(
            f"prompt '{prompt.name}' is in {prompt.mode} mode; run it with {route}",
            details={"prompt_mode": prompt.mode.value, "route": route},
        )
    if version is None:
        if wanted is not None:
            raise prompts.version_not_found(prompt, wanted)
        raise ValidationFailed(
            f"prompt '{prompt.name}' has no active version; pass `version` explicitly",
            details={"name": prompt.name},
        )
    config = version.config or {}
    if model is None:
        model_name = request.input.model_name or config.get("model_name")
        if model_name is None:
            raise ValidationFailed(
                f"model_name is required: version {version.version_number} of prompt "
                f"'{prompt.name}' has no config.model_name to fall back on",
                details={"field": "model_name"},
            )
        provider = request.input.provider or config.get("provider") or ProviderName.OPENAI
        raise UnknownModel(
            f"'{model_name}' is not an active {provider} model",
            details={"provider": str(provider), "model_name": model_name},
        )
    params = {**(config.get("params") or {}), **request.input.params}
    max_new = params.get("max_new_tokens")
    if max_new is not None and max_new > model.max_tokens:
        raise ValidationFailed(
            f"params.max_new_tokens {max_new} is over {model.model_name}'s limit "
            f"of {model.max_tokens}",
            details={"max_tokens": model.max_tokens},
        )
    return prompt, version, model, params


# --- running (workers) ------------------------------------------------------------------


async def execute_queued(rt: Runtime, execution_id: uuid.UUID) -> ExecutionStatus | None:
    """Run one queued execution: the one entry point of Celery and the in-process worker.

    Returns the status written, or None when the row was not ours to run (already claimed,
    canceled, finished, or not yet due): duplicate deliveries land here and do nothing.
    """
    async with rt.db.ledger() as ex:
        claimed = await ledger.claim(
            ex,
            execution_id,
            from_status=ExecutionStatus.QUEUED,
            to_status=ExecutionStatus.RUNNING,
            now=utcnow(),
        )
    if claimed is None:
        return None
    execution, prompt, version, model = claimed
    record = ExecutionRecord(execution, prompt, version, model)
    values, retryable = await _attempt(rt, model, version, execution, execution.params)
    delay: float | None = None
    if retryable and execution.attempts < rt.max_attempts:
        delay = rt.settings.execution_retry_delays[execution.attempts - 1]
        retry_at = utcnow()
        values |= {
            "status": ExecutionStatus.QUEUED,
            "completed_at": None,
            "not_before": retry_at + timedelta(seconds=delay),
            "dispatched_at": retry_at,
        }
    if not await _write_attempt(rt.db, execution, values):
        log.warning("stale_attempt_discarded", execution_id=str(execution.id))
        return None
    for name, value in values.items():
        setattr(execution, name, value)
    if delay is not None:
        log.info(
            "execution_retry_scheduled",
            execution_id=str(execution.id),
            attempts=execution.attempts,
            delay_s=delay,
            error_type=values["error_type"],
        )
        await _publish(rt, execution.id, delay_s=delay)
    else:
        _log_finished(record)
    status: ExecutionStatus = values["status"]
    return status


async def _write_attempt(db: Database, execution: Execution, values: dict[str, Any]) -> bool:
    """Write a running attempt's outcome if that attempt still owns the row (True when
    written); a final status also counts the execution in the analytics rollups,
    atomically with it."""
    if values["status"] in FINAL_STATUSES:
        return await _finish(
            db, execution, values, from_status=ExecutionStatus.RUNNING, attempt=execution.attempts
        )
    async with db.ledger() as ex:
        return await ledger.write_attempt(
            ex,
            execution.id,
            from_status=ExecutionStatus.RUNNING,
            attempt=execution.attempts,
            values=values,
        )


async def _finish(
    db: Database,
    execution: Execution,
    values: dict[str, Any],
    *,
    from_status: ExecutionStatus,
    attempt: int | None,
) -> bool:
    """Move ``execution`` from ``from_status`` to the final status in ``values``: the row
    as it will read then, with the rollup deltas computed from it (the update is guarded, so
    a delta is only counted with it)."""
    written = cast(Execution, _AsWritten(execution, values))
    item = ledger.Finish(
        execution_id=execution.id,
        from_status=from_status,
        attempt=attempt,
        values={name: getattr(written, name) for name in ledger.FINISH_ATTRIBUTES},
        delta=analytics.rollup_delta(written),
    )
    return await ledger.finish(db, item)


class _AsWritten:
    """An execution as it reads once ``values`` are written over it (attribute access)."""

    __slots__ = ("_execution", "_values")

    def __init__(self, execution: Execution, values: Mapping[str, Any]) -> None:
        self._execution = execution
        self._values = values

    def __getattr__(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        return getattr(self._execution, name)


async def _attempt(
    rt: Runtime,
    model: Model,
    version: PromptVersion,
    execution: Execution,
    params: Mapping[str, Any] | MappedParams,
) -> tuple[dict[str, Any], bool]:
    """Call the provider once with what the row recorded; the columns to write, and whether
    a failure may be retried. A success is priced; a failure writes no cost (it keeps null:
    providers do not bill a failed call's tokens)."""
    provider = rt.providers[model.provider]
    prompt, response_format = provider_input(execution, version)
    started = time.perf_counter()
    try:
        result = await provider.generate(
            prompt, model=model.model_name, params=params, response_format=response_format
        )
    except ProviderError as exc:
        return failure(exc.kind.value, exc.message, started), exc.retryable
    except Exception as exc:  # a bug or an unexpected SDK error: fail the row, keep the worker
        log.exception("provider_call_crashed", model=model.model_name)
        return failure("internal", f"unexpected error: {type(exc).__name__}", started), False
    return priced_success(model, execution, result), False


def provider_input(
    execution: Execution, version: PromptVersion
) -> tuple[str | list[dict[str, str]], dict[str, Any] | None]:
    """What the provider is sent: the row's rendered messages (a chat) or its text, and the
    version's ``response_format``."""
    prompt: str | list[dict[str, str]] = execution.rendered_prompt
    if execution.rendered_messages is not None:
        prompt = execution.rendered_messages
    return prompt, (version.config or {}).get("response_format")


def priced_success(model: Model, execution: Execution, result: ProviderResult) -> dict[str, Any]:
    """The columns of a successful call, priced (``services.costs``) at the attempt's start."""
    cost = costs.execution_cost(
        model,
        prompt_tokens=result.prompt_tokens,
        response_tokens=result.response_tokens,
        cached_prompt_tokens=result.cached_prompt_tokens,
        at=execution.started_at,
    )
    return _success(result) | {"cost_usd": cost.cost_usd, "price_source": cost.price_source}


def _success(result: ProviderResult) -> dict[str, Any]:
    text, full_size = truncate_utf8(result.response_text, MAX_RESPONSE_BYTES)
    return {
        "status": ExecutionStatus.SUCCEEDED,
        "response_text": text,
        "prompt_tokens": result.prompt_tokens,
        "response_tokens": result.response_tokens,
        "latency_ms": result.latency_ms,
        "provider_request_id": result.provider_request_id,
        "error_type": "truncated" if full_size else None,
        "error_message": (
            f"response was {full_size} bytes; stored the first {MAX_RESPONSE_BYTES}"
            if full_size
            else None
        ),
        "completed_at": utcnow(),
    }


def failure(error_type: str, message: str, started: float) -> dict[str, Any]:
    return {
        "status": ExecutionStatus.FAILED,
        "error_type": error_type,
        "error_message": message,
        "latency_ms": int((time.perf_counter() - started) * 1000),
        "completed_at": utcnow(),
    }


def truncate_utf8(text: str, limit: int) -> tuple[str, int | None]:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character.

    Returns the text and, when it was cut, its original size in bytes.
    """
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text, None
    return data[:limit].decode("utf-8", errors="ignore"), len(data)


# --- recovery ---------------------------------------------------------------------------


async def sweep(rt: Runtime, *, now: datetime | None = None, batch: int = 500) -> list[uuid.UUID]:
    """Recover rows stuck ``running`` and re-publish ``queued`` rows nobody picked up.

    A running row older than RECOVERY_TIMEOUT_S lost its worker: an async one with attempts
    left goes back to ``queued``; otherwise it fails with ``worker_lost``. A sync one is never
    re-run (its caller has gone). Returns the ids published.
    """
    now = now or utcnow()
    settings = rt.settings
    republish: list[uuid.UUID] = []
    async with rt.db.ledger() as ex:
        stale = await ledger.find_stale_running(
            ex,
            running=ExecutionStatus.RUNNING,
            started_before=now - timedelta(seconds=settings.recovery_timeout_s),
            limit=batch,
        )
        for execution in stale:
            retry = (
                execution.execution_mode == ExecutionMode.ASYNC
                and execution.attempts < rt.max_attempts
            )
            values: dict[str, Any] = {
                "error_type": "worker_lost",
                "error_message": f"no result {settings.recovery_timeout_s:.0f}s after attempt "
                f"{execution.attempts} started; " + ("retrying" if retry else "no attempts left"),
            }
            if retry:
                values |= {
                    "status": ExecutionStatus.QUEUED,
                    "not_before": None,
                    "dispatched_at": now,
                }
            else:
                values |= {"status": ExecutionStatus.FAILED, "completed_at": now}
            if await _write_attempt(rt.db, execution, values):
                log.warning("execution_recovered", execution_id=str(execution.id), retry=retry)
                if retry:
                    republish.append(execution.id)
        republish += await ledger.mark_undispatched(
            ex,
            queued=ExecutionStatus.QUEUED,
            now=now,
            published_before=now - timedelta(seconds=settings.sweep_interval_s),
            limit=batch,
        )
    for execution_id in republish:
        await _publish(rt, execution_id)
    return republish


async def _publish(rt: Runtime, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
    """Publish after commit. A failed publish loses nothing: the row is committed and the
    sweeper re-publishes it once the queue answers again."""
    try:
        await rt.dispatcher.publish(execution_id, delay_s=delay_s)
    except Exception as exc:
        log.warning(
            "publish_failed_sweeper_will_retry",
            execution_id=str(execution_id),
            error=type(exc).__name__,
        )


# --- reading and canceling ----------------------------------------------------------------


async def get(rt: Runtime, execution_id: uuid.UUID) -> ExecutionRecord:
    async with rt.db.ledger() as ex:
        found = await ledger.get_execution(ex, execution_id)
    if found is None:
        raise _execution_not_found(execution_id)
    return ExecutionRecord(*found)


def _execution_not_found(execution_id: uuid.UUID) -> NotFound:
    return NotFound(f"execution {execution_id} does not exist", details={"id": str(execution_id)})


async def cancel(rt: Runtime, execution_id: uuid.UUID) -> ExecutionRecord:
    """A queued execution becomes ``canceled`` and never runs; anything else is 409."""
    async with rt.db.ledger() as ex:
        found = await ledger.get_execution(ex, execution_id)
        if found is None:
            raise _execution_not_found(execution_id)
        record = ExecutionRecord(*found)
        execution = record.execution
        if execution.status == ExecutionStatus.QUEUED:
            values: dict[str, Any] = {
                "status": ExecutionStatus.CANCELED,
                "error_type": "canceled",
                "error_message": "canceled before it ran",
                "completed_at": utcnow(),
            }
            if await _finish(
                rt.db, execution, values, from_status=ExecutionStatus.QUEUED, attempt=None
            ):
                for name, value in values.items():
                    setattr(execution, name, value)
                return record
            # claimed (or canceled) meanwhile: say what it is now
            found = await ledger.get_execution(ex, execution_id)
            assert found is not None
            execution = found[0]
    raise NotCancelable(
        f"execution is {execution.status}; only queued executions can be canceled",
        details={"status": execution.status.value},
    )


async def list_page(
    session: AsyncSession,
    *,
    prompt_name: str | None = None,
    status: ExecutionStatus | None = None,
    execution_mode: ExecutionMode | None = None,
    prompt_mode: PromptMode | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before: tuple[datetime, uuid.UUID] | None = None,
    limit: int = 50,
) -> tuple[Sequence[ExecutionRecord], tuple[datetime, uuid.UUID] | None]:
    """One page, newest first, and the keyset to continue from (None on the last page)."""
    since, until = analytics.as_utc(since), analytics.as_utc(until)
    rows = await repo.list_executions(
        session,
        prompt_name=prompt_name,
        status=status,
        execution_mode=execution_mode,
        prompt_mode=prompt_mode,
        since=since,
        until=until,
        before=before,
        limit=limit + 1,
    )
    records = [ExecutionRecord(e, p, v, m) for e, p, v, m in rows[:limit]]
    if len(rows) > limit:
        last = records[-1].execution
        return records, (last.created_at, last.id)
    return records, None


# --- helpers ------------------------------------------------------------------------------


def _column_values(execution: Execution) -> dict[str, Any]:
    """The ORM object's attributes as an INSERT's values (attribute names, not columns)."""
    mapper = Execution.__mapper__
    return {attr.key: getattr(execution, attr.key) for attr in mapper.column_attrs}


def _log_finished(record: ExecutionRecord) -> None:
    """The one log line per finished execution (SPEC §7); never variables or text."""
    e = record.execution
    log.info(
        "execution_finished",
        execution_id=str(e.id),
        prompt=record.prompt.name,
        version=record.version.version_number,
        provider=record.model.provider.value,
        model_name=record.model.model_name,
        latency_ms=e.latency_ms,
        prompt_tokens=e.prompt_tokens,
        response_tokens=e.response_tokens,
        cost_usd=float(e.cost_usd) if e.cost_usd is not None else None,
        status=e.status.value,
        error_type=e.error_type,
        attempts=e.attempts,
        execution_mode=e.execution_mode.value,
    )
