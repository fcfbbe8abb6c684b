"""Executions through the async client: run, submit, wait, cancel, list, idempotency."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.client.conftest import BASE, MODEL
from tests.conftest import API_KEY

from prompt_ledger.client import (
    AsyncPromptLedger,
    BadRequestError,
    ConflictError,
    Execution,
    IdempotencyKeyReusedError,
    ModeMismatchError,
    NotCancelableError,
    NotFoundError,
    RenderError,
    Submission,
    UnknownModelError,
    ValidationError,
    WaitTimeoutError,
)
from prompt_ledger.client._core import BACKOFF_FACTOR, Operations, Sleep
from prompt_ledger.testing.stub_provider import stub_stats


class TestRun:
    async def test_success_is_a_typed_execution(
        self, aclient: AsyncPromptLedger, stub_url: str
    ) -> None:
        await aclient.save_prompt("welcome", "Hello {{ name }}!")
        e = await aclient.run(
            "welcome",
            variables={"name": "Ada"},
            model_name=MODEL,
            params={"temperature": 0.2, "max_new_tokens": 50, "top_k": 5},
            metadata={"user": "u1"},
        )
        assert isinstance(e.id, uuid.UUID)
        assert (e.status, e.execution_mode, e.finished, e.replayed) == (
            "succeeded",
            "sync",
            True,
            False,
        )
        assert (e.prompt.name, e.prompt.mode) == ("welcome", "full")
        assert e.version.number == 1
        assert (e.model.provider, e.model.name) == ("openai", MODEL)
        assert e.rendered_prompt == "Hello Ada!"
        assert e.response_text == "echo: Hello Ada!"
        assert e.params_dropped == ["top_k"]
        assert e.metadata == {"user": "u1"}
        assert e.telemetry.prompt_tokens == 2
        assert e.telemetry.provider_request_id
        assert e.completed_at is not None
        assert e.completed_at >= e.created_at
        assert stub_stats(stub_url)["calls"] == 1

    async def test_explicit_version(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("p", "one")
        await aclient.save_prompt("p", "two")
        e = await aclient.run("p", model_name=MODEL, version=1)
        assert (e.version.number, e.rendered_prompt) == (1, "one")
        with pytest.raises(NotFoundError):
            await aclient.run("p", model_name=MODEL, version=7)

    async def test_provider_failure_is_a_result_not_an_exception(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await aclient.save_prompt("p", "[[stub status=400]] boom")
        e = await aclient.run("p", model_name=MODEL)
        assert e.status == "failed"
        assert e.error is not None
        assert e.error.type == "bad_request"

    async def test_rejections_are_typed_and_record_nothing(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await aclient.save_prompt("p", "Hi {{ who }}")
        with pytest.raises(RenderError) as caught:
            await aclient.run("p", model_name=MODEL)
        assert (caught.value.status, caught.value.code) == (422, "render_error")
        assert "who" in caught.value.message
        with pytest.raises(UnknownModelError):
            await aclient.run("p", model_name="no-such-model", variables={"who": "x"})
        with pytest.raises(ValidationError) as invalid:
            await aclient.run("p", model_name=MODEL, params={"temperature": 5})
        assert invalid.value.details["errors"]
        with pytest.raises(NotFoundError):
            await aclient.run("missing", model_name=MODEL)
        assert (await aclient.list_executions()).items == []

    async def test_tracking_prompt_needs_execute(self, aclient: AsyncPromptLedger) -> None:
        await aclient.register_prompts({"Code.P": "code"})
        for call in (aclient.run, aclient.submit):
            with pytest.raises(ModeMismatchError) as caught:
                await call("Code.P", model_name=MODEL)
            assert isinstance(caught.value, ConflictError)
            assert "/v1/prompts/Code.P/execute" in caught.value.message


class TestIdempotency:
    async def test_run_replays_the_first_answer(
        self, aclient: AsyncPromptLedger, stub_url: str
    ) -> None:
        await aclient.save_prompt("p", "hi")
        first = await aclient.run("p", model_name=MODEL, idempotency_key="order-1")
        again = await aclient.run("p", model_name=MODEL, idempotency_key="order-1")
        assert again.id == first.id
        assert (first.replayed, again.replayed) == (False, True)
        assert again.idempotency_key == "order-1"
        assert stub_stats(stub_url)["calls"] == 1

    async def test_submit_replays_and_a_changed_body_is_refused(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await aclient.save_prompt("p", "hi {{ n }}")
        first = await aclient.submit("p", model_name=MODEL, variables={"n": 1}, idempotency_key="k")
        again = await aclient.submit("p", model_name=MODEL, variables={"n": 1}, idempotency_key="k")
        assert again.execution_id == first.execution_id
        assert (first.replayed, again.replayed) == (False, True)
        with pytest.raises(IdempotencyKeyReusedError) as caught:
            await aclient.submit("p", model_name=MODEL, variables={"n": 2}, idempotency_key="k")
        assert caught.value.status == 422
        with pytest.raises(IdempotencyKeyReusedError):  # same key on another route
            await aclient.run("p", model_name=MODEL, variables={"n": 1}, idempotency_key="k")
        await aclient.wait(first)

    async def test_malformed_key(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("p", "hi")
        with pytest.raises(BadRequestError) as caught:
            await aclient.run("p", model_name=MODEL, idempotency_key="k" * 256)
        assert caught.value.code == "bad_request"


class TestSubmitAndWait:
    async def test_wait_returns_the_finished_execution(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("p", "Hi {{ who }}")
        sub = await aclient.submit("p", model_name=MODEL, variables={"who": "Bob"})
        assert isinstance(sub, Submission)
        assert sub.status == "queued"
        done = await aclient.wait(sub, timeout=10)
        assert (done.status, done.execution_mode, done.response_text) == (
            "succeeded",
            "async",
            "echo: Hi Bob",
        )
        # any reference to the execution will do
        assert (await aclient.wait(sub.execution_id)).id == done.id
        assert (await aclient.wait(str(sub.execution_id))).id == done.id
        assert (await aclient.get_execution(done)).status == "succeeded"

    async def test_wait_times_out_with_the_last_state(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("slow", "[[stub delay=0.6]] slow")
        sub = await aclient.submit("slow", model_name=MODEL)
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError) as caught:
            await aclient.wait(sub, timeout=0.25, poll_interval=0.05)
        assert 0.25 <= time.monotonic() - started < 0.5
        err = caught.value
        assert (err.code, err.status) == ("wait_timeout", None)
        assert err.execution.id == sub.execution_id
        assert err.execution.status in ("queued", "running")
        assert str(sub.execution_id) in str(err)
        assert (await aclient.wait(sub, timeout=10, max_interval=0.05)).status == "succeeded"

    async def test_wait_backs_off(self, app_and_aclient: tuple[FastAPI, AsyncPromptLedger]) -> None:
        app, _ = app_and_aclient
        polls: list[float] = []

        async def count(request: httpx.Request) -> None:
            if request.method == "GET":
                polls.append(time.monotonic())

        http = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), event_hooks={"request": [count]}
        )
        async with http, AsyncPromptLedger(BASE, API_KEY, http_client=http) as client:
            await client.save_prompt("slow", "[[stub delay=0.6]] slow")
            sub = await client.submit("slow", model_name=MODEL)
            done = await client.wait(sub, poll_interval=0.05, max_interval=0.2, timeout=10)
        assert done.status == "succeeded"
        gaps = [b - a for a, b in itertools.pairwise(polls)]
        # The client really sleeps its schedule (0.05, 0.1, 0.2, 0.2, ... s; the schedule itself
        # is checked exactly in test_wait_schedule_doubles_up_to_the_cap). A loaded machine only
        # lengthens a gap, so each gap is at least its pause (timers may fire ~1 ms early).
        schedule = [min(0.05 * BACKOFF_FACTOR**i, 0.2) for i in range(len(gaps))]
        assert len(gaps) >= 2, gaps
        assert all(gap >= pause - 0.005 for gap, pause in zip(gaps, schedule, strict=True)), gaps

    async def test_wait_on_unknown_execution(self, aclient: AsyncPromptLedger) -> None:
        with pytest.raises(NotFoundError):
            await aclient.wait(uuid.uuid4(), timeout=1)
        with pytest.raises(ValueError, match="positive"):
            await aclient.wait(uuid.uuid4(), poll_interval=0)


def test_wait_schedule_doubles_up_to_the_cap() -> None:
    """The flow's pauses, read without any I/O: it yields its sleeps to the driver."""
    execution_id = str(uuid.uuid4())
    running: dict[str, Any] = {
        "id": execution_id,
        "status": "running",
        "execution_mode": "async",
        "prompt": {"name": "p", "mode": "full"},
        "version": {"number": 1, "checksum": "0" * 64},
        "model": {"provider": "openai", "name": MODEL},
        "variables": {},
        "rendered_prompt": "x",
        "params": {},
        "response_text": None,
        "telemetry": {
            "prompt_tokens": None,
            "response_tokens": None,
            "latency_ms": None,
            "provider_request_id": None,
        },
        "params_dropped": [],
        "error": None,
        "attempts": 1,
        "idempotency_key": None,
        "metadata": {},
        "created_at": "2025-01-01T00:00:00Z",
        "started_at": None,
        "completed_at": None,
    }
    request = httpx.Request("GET", "http://x/v1/executions/1")
    flow = Operations().wait(execution_id, timeout=None, poll_interval=0.1, max_interval=1.0)
    sleeps: list[float] = []
    effect = next(flow)
    for _ in range(6):
        effect = flow.send(httpx.Response(200, json=running, request=request))
        assert isinstance(effect, Sleep)
        sleeps.append(effect.seconds)
        effect = flow.send(None)
    assert sleeps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    with pytest.raises(StopIteration) as done:
        flow.send(httpx.Response(200, json={**running, "status": "failed"}, request=request))
    result = done.value.value
    assert isinstance(result, Execution)
    assert result.status == "failed"


class TestCancel:
    async def test_queued_execution_is_canceled(
        self, app_and_aclient: tuple[FastAPI, AsyncPromptLedger], stub_url: str
    ) -> None:
        app, client = app_and_aclient
        runtime = app.state.promptledger.runtime

        class Hold:  # keep the execution queued: nothing is handed to the worker
            async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
                return None

        real, runtime.dispatcher = runtime.dispatcher, Hold()
        try:
            await client.save_prompt("p", "hi")
            sub = await client.submit("p", model_name=MODEL)
            canceled = await client.cancel_execution(sub)
            assert canceled.status == "canceled"
            assert canceled.error is not None
            assert canceled.error.type == "canceled"
            assert (await client.wait(sub, timeout=1)).status == "canceled"
            with pytest.raises(NotCancelableError) as caught:
                await client.cancel_execution(sub.execution_id)
            assert (caught.value.status, caught.value.code) == (409, "not_cancelable")
        finally:
            runtime.dispatcher = real
        assert stub_stats(stub_url)["calls"] == 0

    async def test_finished_or_unknown(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("p", "hi")
        e = await aclient.run("p", model_name=MODEL)
        with pytest.raises(NotCancelableError):
            await aclient.cancel_execution(e)
        with pytest.raises(NotFoundError):
            await aclient.cancel_execution(uuid.uuid4())
        with pytest.raises(NotFoundError):
            await aclient.get_execution(uuid.uuid4())
        with pytest.raises(ValidationError):
            await aclient.get_execution("not-a-uuid")


class TestList:
    async def test_filters_and_pages(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("a", "A")
        await aclient.save_prompt("b", "B [[stub status=400]]")
        ran = [await aclient.run("a", model_name=MODEL) for _ in range(5)]
        failed = await aclient.run("b", model_name=MODEL)
        everything = [e.id async for e in aclient.iter_executions(page_size=2)]
        assert everything == [failed.id, *reversed([e.id for e in ran])]  # newest first
        only_a = [e.id async for e in aclient.iter_executions(prompt_name="a", page_size=4)]
        assert only_a == [e.id for e in reversed(ran)]
        page = await aclient.list_executions(status="failed")
        assert [e.id for e in page.items] == [failed.id]
        assert page.next_cursor is None
        first = await aclient.list_executions(limit=2)
        assert first.next_cursor is not None
        second = await aclient.list_executions(limit=2, cursor=first.next_cursor)
        assert [e.id for e in second.items] == everything[2:4]
        assert (await aclient.list_executions(execution_mode="async")).items == []
        assert len((await aclient.list_executions(prompt_mode="full")).items) == 6

    async def test_time_window(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("a", "A")
        before = datetime.now(UTC) - timedelta(seconds=1)
        e = await aclient.run("a", model_name=MODEL)
        window = await aclient.list_executions(since=before, until=e.created_at + timedelta(1))
        assert [x.id for x in window.items] == [e.id]
        assert (await aclient.list_executions(since=e.created_at + timedelta(1))).items == []
        with pytest.raises(ValueError, match="timezone-aware"):
            await aclient.list_executions(since=datetime(2025, 1, 1))
