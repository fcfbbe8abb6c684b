"""OpenAI (and any OpenAI-compatible server) through the official SDK's chat completions.

Choices that matter for throughput and correctness:

* Calls run the SDK over aiohttp (``DefaultAioHttpClient``): on the project's box it
  made the whole sync-execution handler ~1.7x faster than the SDK's default httpx transport
  (``notes/performance-facts.md`` §1g).
* aiohttp sessions are bound to the event loop that created them, so one SDK client is made
  lazily per running loop and reused for every call on that loop (connection pooling). It is
  closed by :meth:`OpenAIProvider.aclose`, or automatically when its loop is shut down by
  ``asyncio.run`` / ``asyncio.Runner`` (see :meth:`OpenAIProvider._open_async_client`).
* The aiohttp connector limit comes from ``limits.max_connections``: we pass the SDK's
  ``DEFAULT_CONNECTION_LIMITS`` (1000 connections) explicitly, because aiohttp's own default of
  100 would silently cap the calls in flight per process.
* SDK retries are off (``max_retries=0``): PromptLedger decides retries from the error kind.
* ``PROVIDER_TIMEOUT_S`` is a hard ceiling on the whole call (``asyncio.timeout``), not only
  the SDK's per-read timeout, which a slowly trickling answer would never trip.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import anyio
import httpx
from openai import (
    DEFAULT_CONNECTION_LIMITS,
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AsyncOpenAI,
    DefaultAioHttpClient,
)

from prompt_ledger.domain import MAX_INT32
from prompt_ledger.providers.base import (
    MappedParams,
    ProviderError,
    ProviderErrorKind,
    ProviderResult,
    StreamEnd,
    StreamItem,
    redact,
)

if TYPE_CHECKING:
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

    from prompt_ledger.config import Settings

# Spec param name -> chat-completions field. Anything else (top_k, repetition_penalty, unknown
# names) is not part of the chat-completions API and is dropped rather than sent.
_FIELD_FOR_PARAM: dict[str, str] = {
    "temperature": "temperature",
    "top_p": "top_p",
    # ``max_tokens`` rather than ``max_completion_tokens``: it is what OpenAI-compatible servers
    # (vLLM, Ollama, llama.cpp, gateways) understand.
    "max_new_tokens": "max_tokens",
}

_MAX_ERROR_MESSAGE = 1000
_MISSING_KEY_MESSAGE = (
    "OPENAI_API_KEY is not set; set it to the provider's API key (for an OpenAI-compatible "
    "server at OPENAI_BASE_URL, any key that server accepts)"
)


@dataclass(slots=True)
class _LoopClient:
    client: AsyncOpenAI
    closer: AsyncGenerator[None, None]


class OpenAIProvider:
    """The ``openai`` provider. One instance serves every task, thread and event loop."""

    name: str = "openai"

    def __init__(self, api_key: str | None, base_url: str | None, timeout_s: float) -> None:
        self._api_key = api_key or None
        self._base_url = base_url or None
        self._timeout_s = timeout_s
        self._async_clients: dict[asyncio.AbstractEventLoop, _LoopClient] = {}

    def __repr__(self) -> str:
        return f"OpenAIProvider(base_url={self._base_url!r}, timeout_s={self._timeout_s})"

    def map_params(self, params: Mapping[str, Any]) -> MappedParams:
        sent: dict[str, Any] = {}
        dropped: list[str] = []
        for name, value in params.items():
            if value is None:
                continue
            field = _FIELD_FOR_PARAM.get(name)
            if field is None:
                dropped.append(name)
            else:
                sent[field] = value
        dropped.sort()
        return MappedParams(sent, dropped)

    async def generate(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        *,
        model: str,
        params: Mapping[str, Any] | MappedParams,
        response_format: Mapping[str, Any] | None = None,
    ) -> ProviderResult:
        client, body = await self._prepare(prompt, model, params, response_format)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout_s):
                # The SDK's ``post`` (its documented way to send a body as-is) rather than
                # ``chat.completions.create``, which first walks the body through the SDK's
                # TypedDict transform; and the body back as bytes (``cast_to=bytes``) rather
                # than a ``ChatCompletion``, which the SDK builds field by field without
                # validating (~0.25 ms of CPU per call) for the five values read here. Same
                # client, connection pool, headers, timeouts and status errors.
                answer = await client.post("/chat/completions", cast_to=bytes, body=body)
        except TimeoutError:
            raise self._timeout_error() from None
        except APIError as exc:
            # ``from None``: the SDK exception's text may quote the key; keep it out of tracebacks.
            raise self._error_from(exc) from None
        return _result_from_json(answer, _elapsed_ms(started))

    async def stream(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        *,
        model: str,
        params: Mapping[str, Any] | MappedParams,
        response_format: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """The SDK's streaming chat completion (``stream=True`` with
        ``stream_options.include_usage``, so the last chunk carries the token counts).

        ``PROVIDER_TIMEOUT_S`` bounds the wait for each chunk (the first included), not the
        whole stream, which may legitimately run longer than any single answer. Closing this
        generator early closes the SDK stream, i.e. the provider's connection.
        """
        client, body = await self._prepare(prompt, model, params, response_format)
        messages = cast("list[ChatCompletionMessageParam]", body.pop("messages"))
        body.pop("model")
        started = time.perf_counter()
        parts: list[str] = []
        usage: Any = None
        finish: str | None = None
        request_id: str | None = None
        try:
            async with asyncio.timeout(self._timeout_s):
                chunks = await client.chat.completions.create(
                    model=model,
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_body=body or None,
                )
            try:
                iterator = chunks.__aiter__()
                while True:
                    try:
                        async with asyncio.timeout(self._timeout_s):
                            chunk: ChatCompletionChunk = await anext(iterator)
                    except StopAsyncIteration:
                        break
                    request_id = request_id or chunk.id
                    if chunk.usage is not None:
                        usage = chunk.usage
                    for choice in chunk.choices[:1]:
                        if choice.finish_reason is not None:
                            finish = choice.finish_reason
                        text = choice.delta.content
                        if text:
                            parts.append(text)
                            yield text
            finally:
                # shielded: a cancelled consumer (a client gone) must still close the
                # connection, or the provider keeps generating for nobody
                with anyio.CancelScope(shield=True):
                    await chunks.close()
        except TimeoutError:
            raise self._timeout_error() from None
        except APIError as exc:
            raise self._error_from(exc) from None
        except (httpx.HTTPError, aiohttp.ClientError) as exc:
            # a stream cut mid-way: the transport's error, past the SDK's request handling
            message = redact(
                f"the provider's stream broke off: {type(exc).__name__}: {exc}", [self._api_key]
            )[:_MAX_ERROR_MESSAGE]
            raise ProviderError(ProviderErrorKind.PROVIDER_ERROR, message) from None
        details = getattr(usage, "prompt_tokens_details", None)
        result = _checked(
            "".join(parts),
            getattr(usage, "prompt_tokens", None),
            getattr(usage, "completion_tokens", None),
            _elapsed_ms(started),
            request_id,
            cached_prompt_tokens=getattr(details, "cached_tokens", None),
        )
        yield StreamEnd(result, finish)

    async def _prepare(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        model: str,
        params: Mapping[str, Any] | MappedParams,
        response_format: Mapping[str, Any] | None,
    ) -> tuple[AsyncOpenAI, dict[str, Any]]:
        """This loop's client and the chat-completions body (for either call)."""
        if self._api_key is None:
            raise ProviderError(ProviderErrorKind.AUTH_ERROR, _MISSING_KEY_MESSAGE)
        entry = self._async_clients.get(asyncio.get_running_loop())
        client = entry.client if entry is not None else await self._open_async_client()
        sent = params.sent if isinstance(params, MappedParams) else self.map_params(params).sent
        body: dict[str, Any] = {
            "model": model,
            # A text version is one user message (SPEC §7); a chat version its messages.
            "messages": [{"role": "user", "content": prompt}]
            if isinstance(prompt, str)
            else [dict(message) for message in prompt],
            **sent,
        }
        if response_format is not None:
            body["response_format"] = dict(response_format)
        return client, body

    async def aclose(self) -> None:
        """Close every pooled client: this loop's now, other live loops' on their own loop."""
        current = asyncio.get_running_loop()
        entries = list(self._async_clients.items())
        self._async_clients.clear()
        for loop, entry in entries:
            if loop is current:
                await entry.closer.aclose()
            elif not loop.is_closed():
                asyncio.run_coroutine_threadsafe(entry.closer.aclose(), loop)

    async def _open_async_client(self) -> AsyncOpenAI:
        loop = asyncio.get_running_loop()
        # Loops closed without a clean shutdown leave entries behind; drop them here.
        # list() copies atomically: another thread's loop may be adding its own entry meanwhile.
        for stale in [lp for lp in list(self._async_clients) if lp.is_closed()]:
            self._async_clients.pop(stale, None)
        client = AsyncOpenAI(
            api_key=self._api_key,
            base_url=self._base_url,
            timeout=self._timeout_s,
            max_retries=0,
            http_client=DefaultAioHttpClient(
                timeout=self._timeout_s, limits=DEFAULT_CONNECTION_LIMITS
            ),
        )
        closer = self._close_at_loop_shutdown(loop, client)
        self._async_clients[loop] = _LoopClient(client, closer)
        # Starting an async generator registers it with the running loop's asyncgen hooks, so
        # ``loop.shutdown_asyncgens()`` (run by asyncio.run/Runner) closes the aiohttp session
        # while the loop still runs: no "Unclosed client session" when a caller (a Celery task,
        # a script) runs each call in its own short-lived loop.
        await anext(closer)
        return client

    async def _close_at_loop_shutdown(
        self, loop: asyncio.AbstractEventLoop, client: AsyncOpenAI
    ) -> AsyncGenerator[None, None]:
        try:
            yield
        finally:
            entry = self._async_clients.get(loop)
            if entry is not None and entry.client is client:
                del self._async_clients[loop]
            await client.close()

    def _timeout_error(self) -> ProviderError:
        return ProviderError(
            ProviderErrorKind.TIMEOUT,
            f"the provider did not answer within {self._timeout_s:g} s (PROVIDER_TIMEOUT_S)",
        )

    def _error_from(self, exc: APIError) -> ProviderError:
        status: int | None = None
        if isinstance(exc, APIStatusError):
            status = exc.status_code
            kind = _kind_for_status(status)
            message = f"provider answered HTTP {status}: {_status_detail(exc)}"
        elif isinstance(exc, APIResponseValidationError):
            status = exc.status_code
            kind = ProviderErrorKind.PROVIDER_ERROR
            message = f"provider answered HTTP {status} with a malformed body"
        elif isinstance(exc, APITimeoutError) and _is_real_timeout(exc):
            return self._timeout_error()
        elif isinstance(exc, APIConnectionError):
            # Includes APITimeoutError raised for a refused connection (see _is_real_timeout).
            kind = ProviderErrorKind.PROVIDER_ERROR
            message = f"could not reach the provider: {_root_cause_text(exc)}"
        else:
            kind = ProviderErrorKind.PROVIDER_ERROR
            message = f"provider call failed: {exc.message}"
        # Redact before cutting, so that a truncation can never leave half a key behind.
        message = redact(message, [self._api_key])[:_MAX_ERROR_MESSAGE]
        return ProviderError(kind, message, status)


def openai_provider_from_settings(settings: Settings) -> OpenAIProvider:
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return OpenAIProvider(
        api_key=key, base_url=settings.openai_base_url, timeout_s=settings.provider_timeout_s
    )


def _kind_for_status(status: int) -> ProviderErrorKind:
    if status in (401, 403):
        return ProviderErrorKind.AUTH_ERROR
    if status == 429:
        return ProviderErrorKind.RATE_LIMITED
    if status == 408:  # the server's own request timeout: as retryable as ours
        return ProviderErrorKind.TIMEOUT
    if 400 <= status < 500:
        return ProviderErrorKind.BAD_REQUEST
    return ProviderErrorKind.PROVIDER_ERROR


def _status_detail(exc: APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        detail = body.get("message")
        if isinstance(detail, str) and detail:
            return detail
    return exc.message


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_real_timeout(exc: APITimeoutError) -> bool:
    """Whether a socket really timed out.

    The SDK's aiohttp adapter maps every ``aiohttp.ClientConnectionError`` (connection refused,
    server disconnected) to ``httpx.ConnectTimeout`` and thus to ``APITimeoutError``. A real
    timeout always has a builtin ``TimeoutError`` (aiohttp's and the socket module's timeouts
    subclass it) somewhere in its cause chain; a refused connection does not.
    """
    return any(isinstance(e, TimeoutError) for e in _cause_chain(exc)[1:])


def _root_cause_text(exc: BaseException) -> str:
    root = _cause_chain(exc)[-1]
    return str(root) or type(root).__name__


def _elapsed_ms(started: float) -> int:
    return max(0, round((time.perf_counter() - started) * 1000))


_NO_CHOICE = "provider answered without a chat completion choice"


def _result_from_json(body: bytes, latency_ms: int) -> ProviderResult:
    """From a chat completion's JSON body: the text (the refusal when there is no content),
    the token counts and the request id."""
    try:
        completion = json.loads(body)
    except ValueError:
        raise ProviderError(
            ProviderErrorKind.PROVIDER_ERROR,
            "provider answered HTTP 200 with a body that is not JSON",
        ) from None
    try:
        message = completion["choices"][0]["message"]
        text = message.get("content")
        if text is None:
            text = message.get("refusal") or ""
        usage = completion.get("usage") or {}
        request_id = completion.get("id")
    except (AttributeError, IndexError, KeyError, TypeError):
        raise ProviderError(ProviderErrorKind.PROVIDER_ERROR, _NO_CHOICE) from None
    if not isinstance(usage, dict):
        usage = {}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return _checked(
        text,
        usage.get("prompt_tokens"),
        usage.get("completion_tokens"),
        latency_ms,
        request_id,
        cached_prompt_tokens=cached,
    )


def _checked(
    text: object,
    prompt_tokens: object,
    response_tokens: object,
    latency_ms: int,
    request_id: object,
    *,
    cached_prompt_tokens: object = None,
) -> ProviderResult:
    """A result with only what the ledger can store: text as text, counts as ints."""
    if not isinstance(text, str):
        raise ProviderError(
            ProviderErrorKind.PROVIDER_ERROR,
            "provider answered a message whose content is not text",
        )
    return ProviderResult(
        response_text=text,
        prompt_tokens=_count(prompt_tokens),
        response_tokens=_count(response_tokens),
        latency_ms=latency_ms,
        provider_request_id=request_id if isinstance(request_id, str) and request_id else None,
        cached_prompt_tokens=_count(cached_prompt_tokens),
    )


def _count(value: object) -> int | None:
    """A token count, or None for a missing or nonsensical one (bool, float, negative, huge)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_INT32:
        return value
    return None
