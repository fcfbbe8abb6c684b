"""Streamed runs as Server-Sent Events (SPEC §10.1), through ``sse-starlette``.

Events, each ``data`` one JSON object:

* ``execution`` — ``{id, status: "running"}``, once the row is committed;
* ``delta`` — ``{text}``, a piece of the answer as the provider streamed it;
* ``done`` — the finished execution, exactly as ``GET /v1/executions/{id}`` returns it;
* ``error`` — the §6 envelope (``code`` is the execution's ``error.type``; ``details`` hold the
  ``execution_id`` and the failed ``execution``).

The service runs the stream and writes the row; this module only frames its events.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

from fastapi import Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from prompt_ledger.db.tables import ExecutionStatus
from prompt_ledger.schemas.executions import ExecutionOut
from prompt_ledger.services.executions import ExecutionRecord
from prompt_ledger.services.streaming import StreamDelta, StreamOpened, StreamRun

REPLAYED = {"Idempotent-Replayed": "true"}  # every idempotent replay, streamed or not
PING_INTERVAL_S = 15  # keeps proxies from closing an idle stream (a slow first token)


def stream_response(outcome: StreamRun | ExecutionRecord) -> Response:
    """The stream; or, for an idempotent replay, the recorded execution as JSON (200)."""
    if isinstance(outcome, ExecutionRecord):
        return Response(
            ExecutionOut.of(outcome).model_dump_json(),
            media_type="application/json",
            headers=REPLAYED,
        )
    return EventSourceResponse(
        _events(outcome),
        ping=PING_INTERVAL_S,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _events(run: StreamRun) -> AsyncIterator[ServerSentEvent]:
    # aclosing: when the client goes away while this generator is suspended, the service's
    # generator is closed too (it ends the provider call and records the disconnect)
    async with contextlib.aclosing(run.events) as events:  # type: ignore[type-var]
        async for event in events:
            if isinstance(event, StreamOpened):
                execution = event.record.execution
                yield _event("execution", {"id": str(execution.id), "status": execution.status})
                continue
            if isinstance(event, StreamDelta):
                yield _event("delta", {"text": event.text})
                continue
            out = ExecutionOut.of(event.record)
            if out.status == ExecutionStatus.SUCCEEDED:
                yield ServerSentEvent(data=out.model_dump_json(), event="done")
            else:
                error = out.error
                envelope = {
                    "error": {
                        "code": error.type if error else "internal",
                        "message": error.message if error else "the run failed",
                        "details": {
                            "execution_id": str(out.id),
                            "execution": out.model_dump(mode="json"),
                        },
                    }
                }
                yield _event("error", envelope)


def _event(name: str, payload: object) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(payload, ensure_ascii=False), event=name)
