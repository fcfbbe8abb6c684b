"""The stub provider's streaming (SSE ``chat.completion.chunk`` frames), read through the
official ``openai`` SDK and as raw SSE over HTTP."""

from __future__ import annotations

import time

import httpx
import openai
import pytest

from prompt_ledger.testing.stub_provider import stub_stats

MODEL = "gpt-4o-mini"


@pytest.fixture
def client(stub_url: str) -> openai.OpenAI:
    return openai.OpenAI(api_key="sk-test", base_url=stub_url, max_retries=0)


def _stream(client: openai.OpenAI, prompt: str, *, usage: bool = True) -> list[object]:
    return list(
        client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True} if usage else openai.omit,
        )
    )


def test_chunks_of_the_reply_then_finish_and_usage(client: openai.OpenAI, stub_url: str) -> None:
    chunks = _stream(client, 'go [[stub reply="one two three"]]')
    text = "".join(
        c.choices[0].delta.content or ""  # type: ignore[attr-defined]
        for c in chunks
        if c.choices  # type: ignore[attr-defined]
    )
    assert text == "one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]  # type: ignore[attr-defined]
    assert finishes[-1] == "stop"
    usage = chunks[-1].usage  # type: ignore[attr-defined]
    assert (usage.prompt_tokens, usage.completion_tokens) == (1, 3)
    assert all(c.object == "chat.completion.chunk" for c in chunks)  # type: ignore[attr-defined]
    assert stub_stats(stub_url)["streams_completed"] == 1


def test_no_usage_chunk_unless_asked(client: openai.OpenAI) -> None:
    chunks = _stream(client, 'go [[stub reply="a b"]]', usage=False)
    assert all(c.usage is None for c in chunks)  # type: ignore[attr-defined]


def test_chunk_delay_spaces_the_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": '[[stub reply="a b c d" chunk_delay=0.1]]'}],
        stream=True,
    )
    started = time.perf_counter()
    arrivals = [
        time.perf_counter() - started for c in stream if c.choices and c.choices[0].delta.content
    ]
    assert len(arrivals) == 4
    assert arrivals[0] < 0.08
    assert arrivals[-1] >= 0.3


def test_error_before_the_first_chunk_is_an_http_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        _stream(client, "[[stub status=429]]")


def test_broken_stream_cuts_the_connection_mid_way(client: openai.OpenAI) -> None:
    received: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        for chunk in client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": '[[stub reply="a b c d" fault=reset]]'}],
            stream=True,
        ):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert "".join(received) == "a b"


def test_raw_sse_frames_end_with_done(stub_url: str) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": '[[stub reply="hi there"]]'}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with httpx.stream("POST", f"{stub_url}/chat/completions", json=body, timeout=5) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"


def test_client_disconnect_is_counted(stub_url: str) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": '[[stub reply="a b c d e f" chunk_delay=0.2]]'}],
        "stream": True,
    }
    with httpx.stream("POST", f"{stub_url}/chat/completions", json=body, timeout=5) as r:
        next(r.iter_lines())
    deadline = time.monotonic() + 3
    while stub_stats(stub_url)["streams_disconnected"] != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    stats = stub_stats(stub_url)
    assert stats["streams_disconnected"] == 1
    assert stats["streams_completed"] == 0
