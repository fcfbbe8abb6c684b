"""``stream_run`` of both clients over real HTTP (the app on uvicorn, SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest
from tests.api.test_streaming import http, live_url
from tests.conftest import API_KEY

from prompt_ledger.client import (
    AsyncPromptLedger,
    NotFoundError,
    PromptLedger,
    RenderError,
    StreamDelta,
    StreamDone,
    StreamEvent,
    StreamFailed,
    StreamStarted,
)
from prompt_ledger.testing.stub_provider import stub_stats

__all__ = ["http", "live_url"]  # fixtures, used by name
MODEL = "gpt-4o-mini"


def _text(events: list[StreamEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, StreamDelta))


def test_sync_client_streams_a_run(live_url: str) -> None:
    with PromptLedger(live_url, API_KEY) as client:
        client.save_prompt("hello", 'Hi {{ who }} [[stub reply="one two three"]]')
        events = list(client.stream_run("hello", model_name=MODEL, variables={"who": "Ada"}))
        assert isinstance(events[0], StreamStarted)
        assert _text(events) == "one two three"
        done = events[-1]
        assert isinstance(done, StreamDone)
        assert done.execution.id == events[0].id
        assert done.execution.status == "succeeded"
        assert done.execution.telemetry.time_to_first_token_ms is not None
        assert done.execution == client.get_execution(done.execution.id)

        # bad input raises before any event, as run() does
        with pytest.raises(RenderError):
            next(client.stream_run("hello", model_name=MODEL))
        with pytest.raises(NotFoundError):
            list(client.stream_run("missing", model_name=MODEL))

        # an idempotent replay: the recorded execution, once
        first = list(
            client.stream_run(
                "hello", model_name=MODEL, variables={"who": "B"}, idempotency_key="k-1"
            )
        )
        again = list(
            client.stream_run(
                "hello", model_name=MODEL, variables={"who": "B"}, idempotency_key="k-1"
            )
        )
        assert len(again) == 1 and isinstance(again[0], StreamDone)
        assert again[0].execution.replayed
        assert isinstance(first[-1], StreamDone)
        assert again[0].execution.id == first[-1].execution.id


def test_sync_client_failed_stream_and_hang_up(live_url: str, stub_url: str) -> None:
    with PromptLedger(live_url, API_KEY) as client:
        client.save_prompt("broken", '[[stub reply="a b c d" fault=reset]]')
        events = list(client.stream_run("broken", model_name=MODEL))
        failed = events[-1]
        assert isinstance(failed, StreamFailed)
        assert failed.code == "provider_error"
        assert failed.execution is not None and failed.execution.response_text == "a b"

        client.save_prompt("slow", '[[stub reply="a b c d e f" chunk_delay=0.2]]')
        stream = client.stream_run("slow", model_name=MODEL)
        started = next(stream)
        assert isinstance(started, StreamStarted)
        assert isinstance(next(stream), StreamDelta)
        stream.close()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 5
        while client.get_execution(started.id).status == "running":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        execution = client.get_execution(started.id)
        assert execution.error is not None and execution.error.type == "client_disconnected"
        assert execution.response_text
        while stub_stats(stub_url)["streams_disconnected"] != 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)


async def test_async_client_streams_and_hangs_up(live_url: str) -> None:
    async with AsyncPromptLedger(live_url, API_KEY) as client:
        await client.save_prompt("hello", '[[stub reply="one two" chunk_delay=0.05]]')
        events = [e async for e in client.stream_run("hello", model_name=MODEL)]
        assert [type(e) for e in events] == [StreamStarted, StreamDelta, StreamDelta, StreamDone]
        assert _text(events) == "one two"

        with pytest.raises(NotFoundError):
            await anext(aiter(client.stream_run("missing", model_name=MODEL)))

        await client.save_prompt("slow", '[[stub reply="a b c d e f" chunk_delay=0.2]]')
        async with contextlib.aclosing(client.stream_run("slow", model_name=MODEL)) as stream:  # type: ignore[type-var]
            started = await anext(stream)
            assert isinstance(started, StreamStarted)
            async for event in stream:
                assert isinstance(event, StreamDelta)
                break
        deadline = time.monotonic() + 5
        while (await client.get_execution(started.id)).status == "running":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        execution = await client.get_execution(started.id)
        assert execution.error is not None and execution.error.type == "client_disconnected"
