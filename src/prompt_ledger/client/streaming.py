"""Reading a streamed run (SPEC §10.1) for both clients: the events as the client's models.

The request is ``_core.run_call(..., stream=True)``; the drivers (``sync.py``, ``aio.py``)
read the SSE frames with httpx-sse and hand each one here.
"""

from __future__ import annotations

import json

import httpx

from prompt_ledger.client._core import parse, replayed, unexpected
from prompt_ledger.client.models import (
    Execution,
    StreamDelta,
    StreamDone,
    StreamEvent,
    StreamFailed,
    StreamStarted,
)


def is_event_stream(response: httpx.Response) -> bool:
    """False for an idempotent replay, which the server answers as the execution's JSON."""
    content_type: str = response.headers.get("content-type", "")
    return content_type.startswith("text/event-stream")


def replayed_stream(response: httpx.Response) -> StreamDone:
    execution = parse(Execution, response).model_copy(update={"replayed": replayed(response)})
    return StreamDone(execution=execution)


def stream_event(response: httpx.Response, event: str, data: str) -> StreamEvent | None:
    """One SSE event as the client's model; None for an event this client does not know
    (a newer server's), which is skipped."""
    try:
        payload = json.loads(data)
        if event == "execution":
            return StreamStarted.model_validate(payload)
        if event == "delta":
            return StreamDelta.model_validate(payload)
        if event == "done":
            return StreamDone(execution=Execution.model_validate(payload))
        if event == "error":
            error = payload["error"]
            raw = (error.get("details") or {}).get("execution")
            return StreamFailed(
                code=error["code"],
                message=error["message"],
                execution=Execution.model_validate(raw) if raw is not None else None,
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise unexpected(response, f"a valid {event!r} event", exc) from exc
    return None
