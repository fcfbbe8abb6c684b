"""Typed errors for every kind of failure, client configuration, and what the errors say."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI
from tests.client.conftest import BASE
from tests.conftest import API_KEY
from tests.test_cli import free_port

from prompt_ledger.client import (
    AsyncPromptLedger,
    BadRequestError,
    ConflictError,
    IdempotencyKeyInUseError,
    IdempotencyKeyReusedError,
    InvalidTemplateError,
    ModeMismatchError,
    NotCancelableError,
    NotFoundError,
    PayloadTooLargeError,
    PromptLedger,
    PromptLedgerClientError,
    PromptTooLargeError,
    RenderError,
    RequestTimeoutError,
    ServerError,
    TransportError,
    UnauthorizedError,
    UnavailableError,
    UnexpectedResponseError,
    UnknownModelError,
    UnprocessableError,
    ValidationError,
)
from prompt_ledger.client._core import parse, parse_items
from prompt_ledger.client.errors import error_class, error_from_response
from prompt_ledger.client.models import Prompt, Version

SPEC_CODES = [
    (400, "bad_request", BadRequestError),
    (401, "unauthorized", UnauthorizedError),
    (404, "not_found", NotFoundError),
    (409, "mode_mismatch", ModeMismatchError),
    (409, "idempotency_key_in_use", IdempotencyKeyInUseError),
    (409, "not_cancelable", NotCancelableError),
    (413, "payload_too_large", PayloadTooLargeError),
    (422, "validation_error", ValidationError),
    (422, "invalid_template", InvalidTemplateError),
    (422, "render_error", RenderError),
    (422, "prompt_too_large", PromptTooLargeError),
    (422, "unknown_model", UnknownModelError),
    (422, "idempotency_key_reused", IdempotencyKeyReusedError),
    (503, "unavailable", UnavailableError),
    (500, "internal", ServerError),
]


class TestMapping:
    @pytest.mark.parametrize(("status", "code", "cls"), SPEC_CODES)
    def test_every_spec_code_has_its_class(
        self, status: int, code: str, cls: type[PromptLedgerClientError]
    ) -> None:
        assert error_class(status, code) is cls
        request = httpx.Request("GET", "http://x/v1/prompts/p")
        body = {"error": {"code": code, "message": "what to do", "details": {"k": 1}}}
        err = error_from_response(httpx.Response(status, json=body, request=request))
        assert type(err) is cls
        assert (err.status, err.code, err.message, err.details) == (
            status,
            code,
            "what to do",
            {"k": 1},
        )
        assert str(err) == f"{code} ({status}): what to do"

    def test_unknown_codes_fall_back_to_their_status(self) -> None:
        assert error_class(409, "some_new_conflict") is ConflictError
        assert error_class(422, "some_new_check") is UnprocessableError
        assert error_class(502, "bad_gateway") is ServerError
        assert error_class(405, "method_not_allowed") is PromptLedgerClientError
        # a known code with an unexpected status trusts the status
        assert error_class(400, "not_found") is BadRequestError

    def test_statuses_group_codes(self) -> None:
        assert issubclass(ModeMismatchError, ConflictError)
        assert issubclass(RenderError, UnprocessableError)
        assert issubclass(UnavailableError, ServerError)
        assert issubclass(RequestTimeoutError, TransportError)

    def test_a_body_without_the_envelope_keeps_its_status(self) -> None:
        request = httpx.Request("GET", "http://x/health")
        err = error_from_response(
            httpx.Response(502, text="<html>Bad gateway</html>", request=request)
        )
        assert isinstance(err, ServerError)
        assert (err.status, err.code) == (502, "http_502")
        assert "Bad gateway" in err.message

    def test_a_success_of_the_wrong_shape(self) -> None:
        request = httpx.Request("GET", "http://x/v1/prompts/p")
        with pytest.raises(UnexpectedResponseError) as caught:
            parse(Prompt, httpx.Response(200, json={"hello": "world"}, request=request))
        assert caught.value.status == 200
        with pytest.raises(UnexpectedResponseError):
            parse(Prompt, httpx.Response(200, text="<html>", request=request))
        with pytest.raises(UnexpectedResponseError, match="list of Version"):
            parse_items(Version, httpx.Response(200, json={"items": [{}]}, request=request))


class TestAgainstTheService:
    async def test_wrong_or_missing_key(
        self, app_and_aclient: tuple[FastAPI, AsyncPromptLedger]
    ) -> None:
        app, _ = app_and_aclient
        for key in ("wrong-key", None):
            transport = httpx.ASGITransport(app=app)
            async with AsyncPromptLedger(BASE, key, transport=transport) as client:
                with pytest.raises(UnauthorizedError) as caught:
                    await client.list_prompts()
                assert (caught.value.status, caught.value.code) == (401, "unauthorized")
                assert caught.value.message
                assert (await client.health()).status == "healthy"  # no key needed

    async def test_health_and_ready(self, aclient: AsyncPromptLedger) -> None:
        assert (await aclient.health()).status == "healthy"
        ready = await aclient.ready()
        assert ready.status == "ready"
        assert ready.model_extra == {"database": "up"}

    async def test_body_over_the_limit(self, aclient: AsyncPromptLedger) -> None:
        with pytest.raises(PayloadTooLargeError) as caught:
            await aclient.save_prompt("p", "x" * (9 * 1024 * 1024))
        assert caught.value.status == 413

    def test_another_server_s_error_page(self, stub_server_url: str) -> None:
        root = stub_server_url.removesuffix("/v1")
        with PromptLedger(root, API_KEY) as client, pytest.raises(NotFoundError) as caught:
            client.describe_prompt("p")  # the stub answers 404 with OpenAI's error shape
        assert caught.value.status == 404
        assert "no route" in caught.value.message


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


class TestTransport:
    def test_nothing_listening(self) -> None:
        url = f"http://127.0.0.1:{free_port()}"
        with PromptLedger(url, API_KEY) as client, pytest.raises(TransportError) as caught:
            client.health()
        err = caught.value
        assert (err.status, err.code) == (None, "transport_error")
        assert url in err.message
        assert isinstance(err.__cause__, httpx.ConnectError)

    async def test_no_answer_in_time(self, silent_port: int) -> None:
        url = f"http://127.0.0.1:{silent_port}"
        with (
            PromptLedger(url, API_KEY, timeout=0.2) as client,
            pytest.raises(RequestTimeoutError) as caught,
        ):
            client.health()
        assert caught.value.code == "request_timeout"
        async with AsyncPromptLedger(url, API_KEY, timeout=0.2) as aclient:
            with pytest.raises(RequestTimeoutError):
                await aclient.describe_prompt("p")


class TestConfiguration:
    async def test_url_and_key_from_the_environment(
        self, app_and_aclient: tuple[FastAPI, AsyncPromptLedger], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        app, _ = app_and_aclient
        monkeypatch.setenv("PROMPTLEDGER_URL", BASE + "/")
        monkeypatch.setenv("PROMPTLEDGER_API_KEY", API_KEY)
        async with AsyncPromptLedger(transport=httpx.ASGITransport(app=app)) as client:
            assert client.base_url == BASE
            assert (await client.list_prompts()).items == []
            assert API_KEY not in repr(client)

    def test_defaults_and_bad_urls(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("PROMPTLEDGER_URL", raising=False)
        with PromptLedger() as client:
            assert client.base_url == "http://127.0.0.1:8000"
        with PromptLedger("https://pl.example.com/api/") as client:
            assert client.base_url == "https://pl.example.com/api"  # a path prefix is kept
        with pytest.raises(ValueError, match="http"):
            PromptLedger("localhost:8000")

    def test_an_injected_http_client_is_not_closed(self) -> None:
        http = httpx.Client()
        with PromptLedger("http://127.0.0.1:1", "k", http_client=http):
            pass
        assert not http.is_closed
        http.close()
