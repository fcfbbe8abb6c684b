"""OpenAIProvider through the real SDK over HTTP, against the stub server; nothing is patched."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import time
import traceback
import uuid
from collections.abc import AsyncIterator

import pytest

from prompt_ledger.config import Settings
from prompt_ledger.providers import ProviderError, ProviderErrorKind, ProviderResult
from prompt_ledger.providers.base import Provider, StreamEnd
from prompt_ledger.providers.openai import (
    OpenAIProvider,
    _result_from_json,
    openai_provider_from_settings,
)
from prompt_ledger.testing.stub_provider import serve_in_subprocess, stub_stats

API_KEY = "sk-test-" + uuid.uuid4().hex
MODEL = "gpt-4o-mini"
NO_PARAMS: dict[str, object] = {}


@pytest.fixture
async def provider(stub_url: str) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider(api_key=API_KEY, base_url=stub_url, timeout_s=10)
    yield p
    await p.aclose()


@pytest.fixture
def closed_port_url() -> str:
    """A URL on which nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def fail_with(provider: OpenAIProvider, prompt: str) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        await provider.generate(prompt, model=MODEL, params=NO_PARAMS)
    return caught.value


class TestSuccess:
    async def test_returns_text_tokens_request_id_and_latency(
        self, provider: OpenAIProvider
    ) -> None:
        result = await provider.generate("Hello brave new world", model=MODEL, params=NO_PARAMS)

        assert isinstance(result, ProviderResult)
        assert result.response_text == "echo: Hello brave new world"
        assert result.prompt_tokens == 4
        assert result.response_tokens == 5
        assert result.provider_request_id is not None
        assert result.provider_request_id.startswith("chatcmpl-")
        assert 0 <= result.latency_ms < 5000

    async def test_sends_chat_messages_as_they_are_and_response_format(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        messages = [
            {"role": "developer", "content": "Answer in JSON."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"},
        ]
        result = await provider.generate(
            messages,
            model=MODEL,
            params={"temperature": 0.3},
            response_format={"type": "json_object"},
        )
        body = stub_stats(stub_url)["last_body"]
        assert body == {
            "model": MODEL,
            "messages": messages,
            "temperature": 0.3,
            "response_format": {"type": "json_object"},
        }
        assert result.response_text == "echo: Hi\nAgain"  # the stub echoes the user turns

    async def test_sends_one_user_message_with_model_and_key(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        await provider.generate("Hi there", model=MODEL, params=NO_PARAMS)

        stats = stub_stats(stub_url)
        assert stats["last_path"] == "/v1/chat/completions"
        assert stats["last_body"]["model"] == MODEL
        assert stats["last_body"]["messages"] == [{"role": "user", "content": "Hi there"}]
        assert stats["last_headers"]["authorization"] == f"Bearer {API_KEY}"

    async def test_latency_covers_the_provider_call(self, provider: OpenAIProvider) -> None:
        result = await provider.generate("slow [[stub delay=0.3]]", model=MODEL, params=NO_PARAMS)

        assert 300 <= result.latency_ms < 3000

    async def test_missing_usage_gives_unknown_tokens(self, provider: OpenAIProvider) -> None:
        result = await provider.generate("x [[stub usage=none]]", model=MODEL, params=NO_PARAMS)

        assert result.prompt_tokens is None
        assert result.response_tokens is None

    async def test_huge_multibyte_reply_is_returned_whole(self, provider: OpenAIProvider) -> None:
        result = await provider.generate(
            "[[stub size=600000 char=é]]", model=MODEL, params=NO_PARAMS
        )

        assert len(result.response_text.encode()) == 600_000
        assert result.response_text == "é" * 300_000

    async def test_connections_are_pooled_within_a_loop(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        for _ in range(5):
            await provider.generate("again", model=MODEL, params=NO_PARAMS)

        assert stub_stats(stub_url)["clients"] == 1


class TestMalformedAnswers:
    """A 200 that is not a chat completion fails the call as a provider error, one call."""

    @pytest.mark.parametrize(
        ("fault", "message"),
        [("malformed", "not JSON"), ("nochoices", "without a chat completion choice")],
    )
    async def test_fail_the_call_as_a_provider_error(
        self, provider: OpenAIProvider, stub_url: str, fault: str, message: str
    ) -> None:
        error = await fail_with(provider, f"[[stub fault={fault}]]")

        assert error.kind is ProviderErrorKind.PROVIDER_ERROR
        assert message in error.message
        assert stub_stats(stub_url)["calls"] == 1

    @pytest.mark.parametrize(
        ("usage", "expected"),
        [
            ({"prompt_tokens": 3, "completion_tokens": 4}, (3, 4)),
            ({"prompt_tokens": True, "completion_tokens": 2.5}, (None, None)),
            ({"prompt_tokens": -1, "completion_tokens": 2**40}, (None, None)),
            ("not an object", (None, None)),
            (None, (None, None)),
        ],
    )
    def test_only_storable_token_counts_are_kept(
        self, usage: object, expected: tuple[int | None, int | None]
    ) -> None:
        body = {"id": "c1", "choices": [{"message": {"content": "hi"}}], "usage": usage}

        result = _result_from_json(json.dumps(body).encode(), 5)

        assert (result.prompt_tokens, result.response_tokens) == expected
        assert (result.response_text, result.provider_request_id) == ("hi", "c1")

    @pytest.mark.parametrize(
        ("message", "text"),
        [({"content": None, "refusal": "no"}, "no"), ({"content": None}, "")],
    )
    def test_refusal_or_empty_when_there_is_no_content(
        self, message: dict[str, object], text: str
    ) -> None:
        body = json.dumps({"choices": [{"message": message}]}).encode()

        result = _result_from_json(body, 1)

        assert result.response_text == text
        assert result.provider_request_id is None

    def test_content_that_is_not_text_is_refused(self) -> None:
        body = json.dumps({"choices": [{"message": {"content": ["a", "list"]}}]}).encode()

        with pytest.raises(ProviderError) as caught:
            _result_from_json(body, 1)

        assert "not text" in caught.value.message


class TestParams:
    def test_maps_spec_params_and_reports_the_unsupported(self) -> None:
        provider = OpenAIProvider(api_key=API_KEY, base_url=None, timeout_s=1)

        sent, dropped = provider.map_params(
            {
                "temperature": 0.3,
                "top_p": 0.9,
                "top_k": 40,
                "max_new_tokens": 64,
                "repetition_penalty": 1.1,
            }
        )

        assert sent == {"temperature": 0.3, "top_p": 0.9, "max_tokens": 64}
        assert dropped == ["repetition_penalty", "top_k"]

    def test_none_values_are_neither_sent_nor_dropped(self) -> None:
        provider = OpenAIProvider(api_key=API_KEY, base_url=None, timeout_s=1)

        sent, dropped = provider.map_params({"temperature": None, "top_k": None, "top_p": 1})

        assert sent == {"top_p": 1}
        assert dropped == []

    @pytest.mark.parametrize("premapped", [False, True], ids=["spec-params", "mapped-params"])
    async def test_only_accepted_params_reach_the_provider(
        self, provider: OpenAIProvider, stub_url: str, premapped: bool
    ) -> None:
        params = {
            "temperature": 0.2,
            "top_p": 0.5,
            "top_k": 5,
            "max_new_tokens": 16,
            "repetition_penalty": 1.2,
            "seed": None,
        }

        given = provider.map_params(params) if premapped else params
        await provider.generate("p", model=MODEL, params=given)

        body = stub_stats(stub_url)["last_body"]
        assert body == {
            "model": MODEL,
            "messages": [{"role": "user", "content": "p"}],
            "temperature": 0.2,
            "top_p": 0.5,
            "max_tokens": 16,
        }


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "kind"),
        [
            (500, ProviderErrorKind.PROVIDER_ERROR),
            (502, ProviderErrorKind.PROVIDER_ERROR),
            (503, ProviderErrorKind.PROVIDER_ERROR),
            (429, ProviderErrorKind.RATE_LIMITED),
            (408, ProviderErrorKind.TIMEOUT),
            (401, ProviderErrorKind.AUTH_ERROR),
            (403, ProviderErrorKind.AUTH_ERROR),
            (400, ProviderErrorKind.BAD_REQUEST),
            (404, ProviderErrorKind.BAD_REQUEST),
            (422, ProviderErrorKind.BAD_REQUEST),
        ],
    )
    async def test_http_status_maps_to_kind_with_one_call(
        self, provider: OpenAIProvider, stub_url: str, status: int, kind: ProviderErrorKind
    ) -> None:
        error = await fail_with(provider, f"[[stub status={status}]]")

        assert error.kind is kind
        assert error.status_code == status
        assert error.retryable is (status in (408, 429) or status >= 500)
        assert str(status) in error.message
        assert stub_stats(stub_url)["calls"] == 1  # the SDK did not retry

    async def test_slow_answer_is_a_timeout_with_one_call(self, stub_url: str) -> None:
        provider = OpenAIProvider(api_key=API_KEY, base_url=stub_url, timeout_s=0.3)
        try:
            started = time.monotonic()
            error = await fail_with(provider, "[[stub delay=3]]")
            elapsed = time.monotonic() - started
        finally:
            await provider.aclose()

        assert error.kind is ProviderErrorKind.TIMEOUT
        assert error.retryable
        assert error.status_code is None
        assert "PROVIDER_TIMEOUT_S" in error.message
        assert elapsed < 2
        assert stub_stats(stub_url)["calls"] == 1

    async def test_refused_connection_is_a_provider_error(self, closed_port_url: str) -> None:
        provider = OpenAIProvider(api_key=API_KEY, base_url=closed_port_url, timeout_s=5)
        try:
            error = await fail_with(provider, "hello")
        finally:
            await provider.aclose()

        assert error.kind is ProviderErrorKind.PROVIDER_ERROR
        assert error.retryable
        assert error.status_code is None
        assert "could not reach the provider" in error.message

    async def test_scripted_failures_then_success_one_call_each(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        prompt = "[[stub fail=2 key=abc]] hi"

        first = await fail_with(provider, prompt)
        second = await fail_with(provider, prompt)
        third = await provider.generate(prompt, model=MODEL, params=NO_PARAMS)

        assert [first.status_code, second.status_code] == [503, 503]
        assert third.response_text == "echo: hi"
        assert stub_stats(stub_url)["calls_by_key"] == {"abc": 3}

    async def test_api_key_never_appears_in_the_error(self, provider: OpenAIProvider) -> None:
        # The stub quotes the bearer key in its 401 message, as OpenAI does.
        error = await fail_with(provider, "[[stub status=401]]")

        assert error.kind is ProviderErrorKind.AUTH_ERROR
        assert "Incorrect API key provided" in error.message
        assert API_KEY not in error.message
        assert API_KEY not in repr(error)
        assert API_KEY not in "".join(traceback.format_exception(error))

    @pytest.mark.parametrize("key", [None, ""])
    async def test_missing_api_key_fails_without_calling(
        self, stub_url: str, key: str | None
    ) -> None:
        provider = OpenAIProvider(api_key=key, base_url=stub_url, timeout_s=5)

        error = await fail_with(provider, "hello")

        assert error.kind is ProviderErrorKind.AUTH_ERROR
        assert not error.retryable
        assert error.message.startswith("OPENAI_API_KEY is not set")
        assert stub_stats(stub_url)["calls"] == 0
        await provider.aclose()


class TestConcurrency:
    async def test_hundreds_of_calls_are_in_flight_together(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        started = time.monotonic()
        results = await asyncio.gather(
            *(
                provider.generate(f"n{i} [[stub delay=0.5]]", model=MODEL, params=NO_PARAMS)
                for i in range(300)
            )
        )
        elapsed = time.monotonic() - started

        assert sorted(r.response_text for r in results) == sorted(f"echo: n{i}" for i in range(300))
        assert elapsed < 5  # 300 x 0.5 s one after another would be 150 s
        stats = stub_stats(stub_url)
        assert stats["calls"] == 300
        # aiohttp's default connector limit (100) would cap this at exactly 100.
        assert stats["max_in_flight"] > 100

    async def test_one_provider_serves_several_event_loops(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        def in_a_fresh_loop() -> ProviderResult:
            return asyncio.run(provider.generate("other", model=MODEL, params=NO_PARAMS))

        first = await provider.generate("first", model=MODEL, params=NO_PARAMS)
        other = await asyncio.to_thread(in_a_fresh_loop)
        again = await provider.generate("again", model=MODEL, params=NO_PARAMS)

        assert [first.response_text, other.response_text, again.response_text] == [
            "echo: first",
            "echo: other",
            "echo: again",
        ]
        # One pooled connection per loop: this loop's is reused by the third call.
        assert stub_stats(stub_url)["clients"] == 2


class TestConstruction:
    async def test_from_settings_uses_key_url_and_timeout(self, stub_url: str) -> None:
        settings = Settings(
            _env_file=None,  # type: ignore[call-arg]
            openai_api_key=API_KEY,  # type: ignore[arg-type]
            openai_base_url=stub_url,
            provider_timeout_s=0.3,
        )
        provider = openai_provider_from_settings(settings)
        try:
            ok = await provider.generate("configured", model=MODEL, params=NO_PARAMS)
            late = await fail_with(provider, "[[stub delay=3]]")
        finally:
            await provider.aclose()

        assert ok.response_text == "echo: configured"
        assert late.kind is ProviderErrorKind.TIMEOUT
        assert stub_stats(stub_url)["last_headers"]["authorization"] == f"Bearer {API_KEY}"

    async def test_settings_without_key_give_a_provider_that_reports_it(self) -> None:
        provider = openai_provider_from_settings(Settings(_env_file=None))  # type: ignore[call-arg]

        error = await fail_with(provider, "x")

        assert error.kind is ProviderErrorKind.AUTH_ERROR
        assert "OPENAI_API_KEY" in error.message
        await provider.aclose()

    def test_implements_the_provider_interface(self) -> None:
        provider = OpenAIProvider(api_key=API_KEY, base_url=None, timeout_s=1)

        assert isinstance(provider, Provider)
        assert provider.name == "openai"
        assert API_KEY not in repr(provider)


class TestErrorKinds:
    def test_only_transient_kinds_are_retryable(self) -> None:
        assert {k for k in ProviderErrorKind if k.retryable} == {
            ProviderErrorKind.TIMEOUT,
            ProviderErrorKind.RATE_LIMITED,
            ProviderErrorKind.PROVIDER_ERROR,
        }

    def test_values_are_the_spec_error_types(self) -> None:
        assert {k.value for k in ProviderErrorKind} == {
            "timeout",
            "rate_limited",
            "provider_error",
            "auth_error",
            "bad_request",
        }

    def test_provider_error_survives_pickling(self) -> None:
        error = ProviderError(ProviderErrorKind.RATE_LIMITED, "slow down", 429)

        copy = pickle.loads(pickle.dumps(error))

        assert (copy.kind, copy.message, copy.status_code) == (
            ProviderErrorKind.RATE_LIMITED,
            "slow down",
            429,
        )


class TestStubDirectives:
    """The stub's scripting, as the other suites and the benchmarks rely on it."""

    async def test_quoted_reply_and_finish_reason(self, provider: OpenAIProvider) -> None:
        result = await provider.generate(
            'q [[stub reply="two \\"quoted\\" words" finish=length]]', model=MODEL, params=NO_PARAMS
        )

        assert result.response_text == 'two "quoted" words'

    async def test_fail_without_key_counts_per_prompt(self, provider: OpenAIProvider) -> None:
        error = await fail_with(provider, "[[stub fail=1 status=502]] same text")
        result = await provider.generate(
            "[[stub fail=1 status=502]] same text", model=MODEL, params=NO_PARAMS
        )

        assert error.status_code == 502
        assert result.response_text == "echo: same text"

    async def test_unknown_directive_is_refused(self, provider: OpenAIProvider) -> None:
        error = await fail_with(provider, "[[stub stauts=500]]")

        assert error.kind is ProviderErrorKind.BAD_REQUEST
        assert "stauts" in error.message

    async def test_runs_in_a_subprocess_too(self) -> None:
        with serve_in_subprocess() as base_url:
            provider = OpenAIProvider(api_key=API_KEY, base_url=base_url, timeout_s=5)
            try:
                result = await provider.generate("apart", model=MODEL, params=NO_PARAMS)
            finally:
                await provider.aclose()
            assert stub_stats(base_url)["calls"] == 1

        assert result.response_text == "echo: apart"


class TestStream:
    """``stream()``: the SDK's streaming against the stub's SSE chunks."""

    async def _collect(
        self, provider: OpenAIProvider, prompt: str | list[dict[str, str]], **kw: object
    ) -> tuple[list[str], StreamEnd]:
        deltas: list[str] = []
        end: StreamEnd | None = None
        async for item in provider.stream(prompt, model=MODEL, params=NO_PARAMS, **kw):  # type: ignore[arg-type]
            if isinstance(item, StreamEnd):
                end = item
            else:
                deltas.append(item)
        assert end is not None
        return deltas, end

    async def test_deltas_then_the_end_with_usage(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        deltas, end = await self._collect(provider, 'hi [[stub reply="one two three"]]')
        assert deltas == ["one", " two", " three"]
        assert end.result.response_text == "one two three"
        assert (end.result.prompt_tokens, end.result.response_tokens) == (1, 3)
        assert end.finish_reason == "stop"
        assert end.result.provider_request_id is not None
        body = stub_stats(stub_url)["last_body"]
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}

    async def test_chat_messages_params_and_response_format_are_sent(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": '[[stub reply="ok"]]'},
        ]
        deltas, _ = await self._collect(provider, messages, response_format={"type": "json_object"})
        assert deltas == ["ok"]
        body = stub_stats(stub_url)["last_body"]
        assert body["messages"] == messages
        assert body["response_format"] == {"type": "json_object"}

    async def test_error_before_the_first_chunk(self, provider: OpenAIProvider) -> None:
        with pytest.raises(ProviderError) as caught:
            await self._collect(provider, "[[stub status=503]]")
        assert caught.value.kind == ProviderErrorKind.PROVIDER_ERROR
        assert caught.value.status_code == 503

    async def test_broken_stream_raises_after_the_first_deltas(
        self, provider: OpenAIProvider
    ) -> None:
        deltas: list[str] = []
        with pytest.raises(ProviderError) as caught:
            async for item in provider.stream(
                '[[stub reply="a b c d" fault=reset]]', model=MODEL, params=NO_PARAMS
            ):
                assert isinstance(item, str)
                deltas.append(item)
        assert deltas == ["a", " b"]
        assert caught.value.kind == ProviderErrorKind.PROVIDER_ERROR

    async def test_closing_early_closes_the_provider_connection(
        self, provider: OpenAIProvider, stub_url: str
    ) -> None:
        stream = provider.stream(
            '[[stub reply="a b c d e f" chunk_delay=0.2]]', model=MODEL, params=NO_PARAMS
        )
        assert await anext(stream) == "a"
        await stream.aclose()  # type: ignore[attr-defined]
        deadline = time.monotonic() + 3
        while stub_stats(stub_url)["streams_disconnected"] != 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert stub_stats(stub_url)["streams_disconnected"] == 1
