"""Streamed runs (SPEC §10.1) over real HTTP: the app on uvicorn, the stub provider streaming,
SQLite and PostgreSQL; the ledger row checked for every path."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from tests.api.test_chat import EXPECTED_MESSAGES, VARIABLES, save_chat
from tests.api.test_models import put_model, unique
from tests.conftest import API_KEY
from tests.test_cli import free_port

from prompt_ledger.api.app import create_app
from prompt_ledger.config import Settings
from prompt_ledger.testing.stub_provider import stub_stats

RUN = "/v1/executions:run"


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    """This test's app (its backend) served by uvicorn on a thread: real sockets, so the
    stream arrives as it is sent and a client can really hang up."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "app did not start"
        time.sleep(0.01)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
async def http(live_url: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=live_url, headers={"X-API-Key": API_KEY}, timeout=10
    ) as client:
        yield client


def parse_sse(raw: str) -> list[tuple[str, Any]]:
    """A raw SSE consumer: blank-line separated frames of ``event:`` and ``data:`` lines."""
    events: list[tuple[str, Any]] = []
    for frame in raw.replace("\r\n", "\n").split("\n\n"):
        name, data = "message", []
        for line in frame.split("\n"):
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            # ":" comments (pings) are skipped
        if data:
            events.append((name, json.loads("\n".join(data))))
    return events


async def save(http: httpx.AsyncClient, name: str, text: str) -> None:
    r = await http.put(f"/v1/prompts/{name}", json={"template_source": text})
    assert r.status_code in (200, 201), r.text


def body(name: str, **extra: Any) -> dict[str, Any]:
    return {"prompt_name": name, "model_name": "gpt-4o-mini", "stream": True, **extra}


async def stream(http: httpx.AsyncClient, payload: dict[str, Any]) -> list[tuple[str, Any]]:
    async with http.stream("POST", RUN, json=payload) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        raw = (await r.aread()).decode()
    return parse_sse(raw)


async def row(http: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    r = await http.get(f"/v1/executions/{execution_id}")
    assert r.status_code == 200
    execution: dict[str, Any] = r.json()
    return execution


async def count(http: httpx.AsyncClient) -> int:
    return len((await http.get("/v1/executions", params={"limit": 500})).json()["items"])


async def test_happy_path_streams_deltas_and_records_the_row(
    http: httpx.AsyncClient, stub_url: str
) -> None:
    await save(http, "s", 'Hi {{ who }} [[stub reply="one two three four" chunk_delay=0.05]]')
    events = await stream(http, body("s", variables={"who": "Ada"}, params={"temperature": 0.2}))

    names = [name for name, _ in events]
    assert names == ["execution", "delta", "delta", "delta", "delta", "done"]
    first = events[0][1]
    assert first["status"] == "running"
    assert "".join(data["text"] for name, data in events if name == "delta") == (
        "one two three four"
    )
    done = events[-1][1]
    assert done["id"] == first["id"]
    assert done == await row(http, first["id"])  # as GET returns it
    assert done["status"] == "succeeded"
    assert done["response_text"] == "one two three four"
    assert done["rendered_prompt"].startswith("Hi Ada")
    assert done["params"] == {"temperature": 0.2}
    assert done["version"]["number"] == 1
    telemetry = done["telemetry"]
    assert (telemetry["prompt_tokens"], telemetry["response_tokens"]) == (2, 4)
    assert telemetry["cost_usd"] is not None and telemetry["price_source"] is not None
    assert telemetry["provider_request_id"].startswith("chatcmpl-")
    assert 0 <= telemetry["time_to_first_token_ms"] < telemetry["latency_ms"]
    assert telemetry["latency_ms"] >= 150  # three 50 ms gaps
    sent = stub_stats(stub_url)["last_body"]
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
    assert sent["temperature"] == 0.2


async def test_deltas_arrive_before_the_stream_ends(http: httpx.AsyncClient) -> None:
    await save(http, "slow", '[[stub reply="a b c" chunk_delay=0.3]]')
    async with http.stream("POST", RUN, json=body("slow")) as r:
        started = time.perf_counter()
        arrivals: list[float] = []
        async for line in r.aiter_lines():
            if line.startswith("event: delta"):
                arrivals.append(time.perf_counter() - started)
    assert len(arrivals) == 3
    assert arrivals[0] < 0.25 and arrivals[-1] >= 0.5


async def test_a_chat_version_streams_its_messages(http: httpx.AsyncClient, stub_url: str) -> None:
    await save_chat(http)  # type: ignore[arg-type]
    events = await stream(http, body("support", variables=VARIABLES))
    done = events[-1]
    assert done[0] == "done"
    assert done[1]["rendered_messages"] == EXPECTED_MESSAGES
    assert stub_stats(stub_url)["last_body"]["messages"] == EXPECTED_MESSAGES


async def test_provider_error_before_the_first_chunk(http: httpx.AsyncClient) -> None:
    await save(http, "e", "[[stub status=503]]")
    events = await stream(http, body("e"))
    assert [name for name, _ in events] == ["execution", "error"]
    error = events[1][1]["error"]
    assert error["code"] == "provider_error"
    assert "503" in error["message"]
    execution = await row(http, events[0][1]["id"])
    assert execution["status"] == "failed"
    assert execution["error"]["type"] == "provider_error"
    assert execution["response_text"] is None
    assert execution["telemetry"]["time_to_first_token_ms"] is None
    assert error["details"]["execution"] == execution


async def test_broken_stream_fails_the_row_keeping_the_partial_text(
    http: httpx.AsyncClient,
) -> None:
    await save(http, "b", '[[stub reply="a b c d" fault=reset]]')
    events = await stream(http, body("b"))
    assert [name for name, _ in events] == ["execution", "delta", "delta", "error"]
    assert events[-1][1]["error"]["code"] == "provider_error"
    execution = await row(http, events[0][1]["id"])
    assert execution["status"] == "failed"
    assert execution["response_text"] == "a b"
    assert execution["telemetry"]["time_to_first_token_ms"] is not None


async def test_client_disconnect_ends_the_provider_call(
    http: httpx.AsyncClient, stub_url: str
) -> None:
    await save(http, "d", '[[stub reply="a b c d e f g h" chunk_delay=0.2]]')
    async with http.stream("POST", RUN, json=body("d")) as r:
        lines = r.aiter_lines()
        execution_id = None
        async for line in lines:
            if line.startswith("data:") and execution_id is None:
                execution_id = json.loads(line[5:])["id"]
            if line == "event: delta":
                break
    assert execution_id is not None
    deadline = time.monotonic() + 5
    execution = await row(http, execution_id)
    while execution["status"] == "running" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        execution = await row(http, execution_id)
    assert execution["status"] == "failed"
    assert execution["error"]["type"] == "client_disconnected"
    assert execution["response_text"] and "h" not in execution["response_text"]
    assert execution["response_text"].startswith("a")
    while stub_stats(stub_url)["streams_disconnected"] != 1 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    stats = stub_stats(stub_url)
    assert stats["streams_disconnected"] == 1
    assert stats["streams_completed"] == 0


async def test_a_model_without_streaming_is_422_and_no_row(http: httpx.AsyncClient) -> None:
    name = unique()
    assert (await put_model(http, name, supports_streaming=False)).status_code == 201
    await save(http, "n", "Hi")
    r = await http.post(RUN, json=body("n", model_name=name))
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
    assert r.json()["error"]["details"]["field"] == "stream"
    assert await count(http) == 0


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (body("missing"), 404, "not_found"),
        (body("t", variables={}), 422, "render_error"),
        (body("t", model_name="nope"), 422, "unknown_model"),
        (body("t", stream="maybe"), 422, "validation_error"),
        (body("t", params={"max_new_tokens": 10**9}), 422, "validation_error"),
    ],
)
async def test_bad_input_is_4xx_json_and_no_row(
    http: httpx.AsyncClient, payload: dict[str, Any], status: int, code: str
) -> None:
    r = await http.put(
        "/v1/prompts/t",
        json={"template_source": "Hi {{ who }}"},
    )
    assert r.status_code in (200, 201), r.text
    r = await http.post(RUN, json=payload)
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    assert r.headers["content-type"].startswith("application/json")
    assert await count(http) == 0


async def test_idempotent_replay_answers_the_execution_as_json(
    http: httpx.AsyncClient, stub_url: str
) -> None:
    await save(http, "i", '[[stub reply="once"]]')
    headers = {"Idempotency-Key": "stream-1"}
    async with http.stream("POST", RUN, json=body("i"), headers=headers) as r:
        events = parse_sse((await r.aread()).decode())
    done = events[-1][1]
    again = await http.post(RUN, json=body("i"), headers=headers)
    assert again.status_code == 200
    assert again.headers["content-type"].startswith("application/json")
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == done
    # the same request without ``stream`` replays it too (delivery is not part of the key)
    plain = {k: v for k, v in body("i").items() if k != "stream"}
    assert (await http.post(RUN, json=plain, headers=headers)).json()["id"] == done["id"]
    assert stub_stats(stub_url)["calls"] == 1


async def test_tracking_execute_streams_too(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/v1/prompts/register-code",
        json={"prompts": [{"name": "tr", "template_source": '[[stub reply="tracked"]]'}]},
    )
    assert r.status_code in (200, 201), r.text
    async with http.stream(
        "POST", "/v1/prompts/tr/execute", json={"model_name": "gpt-4o-mini", "stream": True}
    ) as resp:
        events = parse_sse((await resp.aread()).decode())
    assert events[-1][0] == "done"
    assert events[-1][1]["response_text"] == "tracked"
    r = await http.post(
        "/v1/prompts/tr/execute",
        json={"model_name": "gpt-4o-mini", "stream": True, "mode": "async"},
    )
    assert r.status_code == 422


async def test_client_gone_before_the_first_token(http: httpx.AsyncClient) -> None:
    await save(http, "w", "[[stub delay=3]]")
    async with http.stream("POST", RUN, json=body("w")) as r:
        async for line in r.aiter_lines():
            if line.startswith("data:"):
                execution_id = json.loads(line[5:])["id"]
                break
    deadline = time.monotonic() + 2.5  # well before the stub would answer
    execution = await row(http, execution_id)
    while execution["status"] == "running" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
        execution = await row(http, execution_id)
    assert execution["error"]["type"] == "client_disconnected"
    assert execution["response_text"] is None
    assert execution["telemetry"]["time_to_first_token_ms"] is None
