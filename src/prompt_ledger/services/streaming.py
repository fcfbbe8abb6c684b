"""Streamed sync runs (SPEC §10.1): the steps of :func:`executions.run_sync`, with the
provider's answer passed on piece by piece.

Validation, rendering, the insert, pricing and the finish are the sync run's own
(``executions.create``, ``priced_success``, ``record_outcome``): only the provider call and
what a disconnect means differ.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from prompt_ledger.db.tables import ExecutionStatus
from prompt_ledger.logging import get_logger
from prompt_ledger.providers.base import MappedParams, ProviderError, ProviderErrorKind, StreamEnd
from prompt_ledger.services import executions
from prompt_ledger.services.executions import ExecutionRecord, ExecutionRequest, Runtime

log = get_logger("prompt_ledger.executions")


@dataclass(frozen=True, slots=True)
class StreamDelta:
    """A piece of the answer, as the provider streamed it."""

    text: str


@dataclass(frozen=True, slots=True)
class StreamFinished:
    """The stream's end: the execution as recorded (``succeeded``, or ``failed`` with its
    error and the text received before the failure)."""

    record: ExecutionRecord


@dataclass(frozen=True, slots=True)
class StreamOpened:
    """The first event: the row is committed (``running``)."""

    record: ExecutionRecord


StreamEvent = StreamOpened | StreamDelta | StreamFinished


@dataclass(slots=True)
class StreamRun:
    """A streamed sync run whose row is committed (``running``); iterate :attr:`events`."""

    record: ExecutionRecord
    events: AsyncIterator[StreamEvent]


async def start_stream(rt: Runtime, request: ExecutionRequest) -> StreamRun | ExecutionRecord:
    """Validate, render and insert exactly as :func:`run_sync` (every bad input raises
    here, before a row or a byte of the stream); an idempotent replay is the recorded
    execution instead (SPEC §10.1: answered as JSON, not a new stream)."""
    record, mapped = await executions.create(rt, request)
    if mapped is None:
        return record
    return StreamRun(record, _stream_events(rt, record, mapped))


async def _stream_events(
    rt: Runtime, record: ExecutionRecord, mapped: MappedParams
) -> AsyncIterator[StreamEvent]:
    """Call the provider streaming, pass its deltas on, and finish the row like a sync run
    (the same group-committed finish), with ``time_to_first_token_ms``.

    A consumer that goes away (the generator is cancelled or closed mid-stream) ends the
    provider call; the row is then ``failed`` with ``client_disconnected`` and the text
    received so far, written shielded from the cancellation.
    """
    execution, model = record.execution, record.model
    provider = rt.providers[model.provider]
    prompt, response_format = executions.provider_input(execution, record.version)
    parts: list[str] = []
    first_token_ms: int | None = None
    started = time.perf_counter()
    upstream = provider.stream(
        prompt, model=model.model_name, params=mapped, response_format=response_format
    )
    values: dict[str, Any]
    try:
        # inside the try: a client gone while this first event is sent is a disconnect too
        yield StreamOpened(record)
        end: StreamEnd | None = None
        async for item in upstream:
            if isinstance(item, StreamEnd):
                end = item
                continue
            if first_token_ms is None:
                first_token_ms = _elapsed_ms(started)
            parts.append(item)
            yield StreamDelta(item)
        if end is None:  # an adapter that broke its contract
            raise ProviderError(
                ProviderErrorKind.PROVIDER_ERROR, "the provider's stream ended without its end"
            )
        values = executions.priced_success(model, execution, end.result)
    except ProviderError as exc:
        values = executions.failure(exc.kind.value, exc.message, started)
    except (asyncio.CancelledError, GeneratorExit):
        values = executions.failure(
            "client_disconnected", "the client disconnected before the stream ended", started
        )
        with anyio.CancelScope(shield=True):
            await upstream.aclose()  # type: ignore[attr-defined]
            await _finish_stream(rt, record, values, parts, first_token_ms)
        raise
    except Exception as exc:
        log.exception("provider_stream_crashed", model=model.model_name)
        values = executions.failure("internal", f"unexpected error: {type(exc).__name__}", started)
    with anyio.CancelScope(shield=True):
        await _finish_stream(rt, record, values, parts, first_token_ms)
    yield StreamFinished(record)


async def _finish_stream(
    rt: Runtime,
    record: ExecutionRecord,
    values: dict[str, Any],
    parts: list[str],
    first_token_ms: int | None,
) -> None:
    """Write a stream's outcome as :func:`executions.run_sync` writes its attempt; a failure keeps
    the text received."""
    if values["status"] == ExecutionStatus.FAILED and parts:
        values["response_text"] = executions.truncate_utf8(
            "".join(parts), executions.MAX_RESPONSE_BYTES
        )[0]
    values["time_to_first_token_ms"] = first_token_ms
    await executions.record_outcome(rt, record, values)


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))
