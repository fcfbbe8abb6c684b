"""The asyncio client, over ``httpx.AsyncClient``.

Every method takes the same arguments and returns the same result as its namesake on
:class:`~prompt_ledger.client.PromptLedger` (whose docstrings hold Args/Returns/Raises), as a
coroutine; ``iter_*`` return async iterators. Both run the same flows (``client/_core.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from types import ModuleType, TracebackType
from typing import Any, Literal, Self, TypeVar, overload

import httpx
from httpx_sse import EventSource

from prompt_ledger.client import _core, streaming
from prompt_ledger.client._core import (
    DEFAULT_TIMEOUT,
    Call,
    ClientBase,
    Effect,
    ExecutionRef,
    Fallback,
    Flow,
    PromptSource,
    SplitSpec,
    VersionChoice,
)
from prompt_ledger.client.cache import CachedPrompt, cache_key
from prompt_ledger.client.errors import (
    TransportError,
    error_from_response,
    error_from_transport,
)
from prompt_ledger.client.models import (
    Analytics,
    AnalyticsMode,
    Diff,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    GroupBy,
    Health,
    History,
    Label,
    Model,
    Page,
    Pricing,
    Prompt,
    PromptEvent,
    PromptMode,
    PromptSummary,
    RegisteredPrompt,
    SavedPrompt,
    StreamEvent,
    Submission,
    Version,
)
from prompt_ledger.client.registration import PromptContent

T = TypeVar("T")


class AsyncPromptLedger(ClientBase):
    """Asyncio client for the PromptLedger API; the arguments of :class:`PromptLedger`.

    ``http_client`` is an ``httpx.AsyncClient`` and ``transport`` an
    ``httpx.AsyncBaseTransport`` — e.g. ``httpx.ASGITransport(app=app)`` to talk to an app
    in the same process.

    Example::

        async with AsyncPromptLedger() as client:  # PROMPTLEDGER_URL / PROMPTLEDGER_API_KEY
            sub = await client.submit("welcome", variables={"name": "Ada"},
                                      model_name="gpt-4o-mini")
            done = await client.wait(sub, timeout=30)
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http_client: httpx.AsyncClient | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key)
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=timeout, transport=transport)
        self._refreshes: set[asyncio.Task[None]] = set()

    # --- the transport ------------------------------------------------------------------------

    async def _run(self, flow: Flow[T]) -> T:
        try:
            effect = flow.send(None)
            while True:
                try:
                    reply = await self._perform(effect)
                except TransportError as exc:  # the flow may handle it (the cache's fallback)
                    effect = flow.throw(exc)
                else:
                    effect = flow.send(reply)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

    async def _perform(self, effect: Effect) -> httpx.Response | None:
        if not isinstance(effect, Call):
            await asyncio.sleep(effect.seconds)
            return None
        request = self._http.build_request(**self._request_args(effect))
        try:
            return await self._http.send(request)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, str(request.url)) from exc

    async def _paginate(
        self, fetch: Callable[[str | None], Awaitable[Page[T]]]
    ) -> AsyncIterator[T]:
        cursor: str | None = None
        while True:
            page = await fetch(cursor)
            for item in page.items:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def aclose(self) -> None:
        """Close the HTTP connections (not those of an ``http_client`` passed in).

        Waits for background cache refreshes still running (each is one request).
        """
        if self._refreshes:
            await asyncio.gather(*self._refreshes, return_exceptions=True)
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # --- operations: see PromptLedger for each one's documentation ----------------------------

    async def health(self) -> Health:
        """See :meth:`PromptLedger.health`."""
        return await self._run(self._ops.health(ready=False))

    async def ready(self) -> Health:
        """See :meth:`PromptLedger.ready`."""
        return await self._run(self._ops.health(ready=True))

    async def save_prompt(
        self,
        name: str,
        template_source: PromptContent | None = None,
        *,
        messages: Iterable[Mapping[str, Any]] | None = None,
        config: Mapping[str, Any] | None = None,
        variables_schema: Mapping[str, Any] | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        activate: bool = True,
    ) -> SavedPrompt:
        """See :meth:`PromptLedger.save_prompt`."""
        return await self._run(
            self._ops.save_prompt(
                name,
                template_source,
                messages=messages,
                config=config,
                variables_schema=variables_schema,
                description=description,
                metadata=metadata,
                activate=activate,
            )
        )

    async def describe_prompt(self, name: str) -> Prompt:
        """See :meth:`PromptLedger.describe_prompt`."""
        return await self._run(self._ops.get_prompt(name))

    async def get_prompt(
        self,
        name: str,
        *,
        label: str | None = None,
        version: int | None = None,
        cache_ttl_s: float = 60,
        fallback: Fallback | None = None,
        subject: str | None = None,
    ) -> CachedPrompt:
        """See :meth:`PromptLedger.get_prompt`; a stale key is refreshed by one task."""
        key = cache_key(name, label=label, version=version)
        cached, refresh = self._ops.cache.lookup(key, cache_ttl_s)
        if refresh:
            task = asyncio.create_task(
                self._run(self._ops.refresh_prompt(key, cache_ttl_s=cache_ttl_s)),
                name=f"promptledger-refresh:{name}",
            )
            self._refreshes.add(task)  # a reference, or the task may be collected mid-way
            task.add_done_callback(self._refreshes.discard)
        if cached is not None:
            return cached.choose(subject)
        flow = self._ops.fetch_prompt(key, cache_ttl_s=cache_ttl_s, fallback=fallback)
        return (await self._run(flow)).choose(subject)

    async def list_prompts(
        self,
        *,
        mode: PromptMode | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[PromptSummary]:
        """See :meth:`PromptLedger.list_prompts`."""
        return await self._run(self._ops.list_prompts(mode=mode, limit=limit, cursor=cursor))

    def iter_prompts(
        self, *, mode: PromptMode | None = None, page_size: int = 100
    ) -> AsyncIterator[PromptSummary]:
        """See :meth:`PromptLedger.iter_prompts`; use with ``async for``."""
        return self._paginate(
            lambda cursor: self.list_prompts(mode=mode, limit=page_size, cursor=cursor)
        )

    async def list_versions(self, name: str) -> list[Version]:
        """See :meth:`PromptLedger.list_versions`."""
        return await self._run(self._ops.list_versions(name))

    async def activate_version(self, name: str, version_number: int) -> Prompt:
        """See :meth:`PromptLedger.activate_version`."""
        return await self._run(self._ops.activate_version(name, version_number))

    async def list_events(self, name: str) -> list[PromptEvent]:
        """See :meth:`PromptLedger.list_events`."""
        return await self._run(self._ops.list_events(name))

    async def list_labels(self, name: str) -> list[Label]:
        """See :meth:`PromptLedger.list_labels`."""
        return await self._run(self._ops.list_labels(name))

    async def set_label(
        self,
        name: str,
        label: str,
        *,
        version: int | None = None,
        split: SplitSpec | None = None,
    ) -> Label:
        """See :meth:`PromptLedger.set_label`."""
        return await self._run(self._ops.set_label(name, label, version=version, split=split))

    async def delete_label(self, name: str, label: str) -> None:
        """See :meth:`PromptLedger.delete_label`."""
        return await self._run(self._ops.delete_label(name, label))

    async def diff(self, name: str, from_version: int, to_version: int) -> Diff:
        """See :meth:`PromptLedger.diff`."""
        return await self._run(self._ops.diff(name, from_version, to_version))

    async def run(
        self,
        prompt_name: str,
        *,
        model_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        version: int | None = None,
        provider: str | None = None,
        params: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        label: str | None = None,
        subject: str | None = None,
    ) -> Execution:
        """See :meth:`PromptLedger.run`."""
        return await self._run(
            self._ops.run(
                prompt_name,
                model_name=model_name,
                variables=variables,
                version=version,
                provider=provider,
                params=params,
                metadata=metadata,
                idempotency_key=idempotency_key,
                label=label,
                subject=subject,
            )
        )

    async def stream_run(
        self,
        prompt_name: str,
        *,
        model_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        version: int | None = None,
        provider: str | None = None,
        params: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        label: str | None = None,
        subject: str | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """See :meth:`PromptLedger.stream_run`; use with ``async for`` (leaving the loop
        early hangs up: close the generator, e.g. with ``contextlib.aclosing``)."""
        call = _core.run_call(
            prompt_name,
            model_name=model_name,
            variables=variables,
            version=version,
            provider=provider,
            params=params,
            metadata=metadata,
            idempotency_key=idempotency_key,
            label=label,
            subject=subject,
            stream=True,
        )
        request = self._http.build_request(**self._request_args(call))
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, str(request.url)) from exc
        try:
            if not response.is_success:
                await response.aread()
                raise error_from_response(response)
            if not streaming.is_event_stream(response):
                await response.aread()
                yield streaming.replayed_stream(response)
                return
            try:
                async for sse in EventSource(response).aiter_sse():
                    event = streaming.stream_event(response, sse.event, sse.data)
                    if event is not None:
                        yield event
            except httpx.TransportError as exc:
                raise error_from_transport(exc, str(request.url)) from exc
        finally:
            await response.aclose()

    async def submit(
        self,
        prompt_name: str,
        *,
        model_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        version: int | None = None,
        provider: str | None = None,
        params: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        label: str | None = None,
        subject: str | None = None,
    ) -> Submission:
        """See :meth:`PromptLedger.submit`."""
        return await self._run(
            self._ops.submit(
                prompt_name,
                model_name=model_name,
                variables=variables,
                version=version,
                provider=provider,
                params=params,
                metadata=metadata,
                idempotency_key=idempotency_key,
                label=label,
                subject=subject,
            )
        )

    async def get_execution(self, execution_id: ExecutionRef) -> Execution:
        """See :meth:`PromptLedger.get_execution`."""
        return await self._run(self._ops.get_execution(execution_id))

    async def list_executions(
        self,
        *,
        prompt_name: str | None = None,
        status: ExecutionStatus | None = None,
        execution_mode: ExecutionMode | None = None,
        prompt_mode: PromptMode | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Execution]:
        """See :meth:`PromptLedger.list_executions`."""
        return await self._run(
            self._ops.list_executions(
                prompt_name=prompt_name,
                status=status,
                execution_mode=execution_mode,
                prompt_mode=prompt_mode,
                since=since,
                until=until,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter_executions(
        self,
        *,
        prompt_name: str | None = None,
        status: ExecutionStatus | None = None,
        execution_mode: ExecutionMode | None = None,
        prompt_mode: PromptMode | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        page_size: int = 100,
    ) -> AsyncIterator[Execution]:
        """See :meth:`PromptLedger.iter_executions`; use with ``async for``."""
        return self._paginate(
            lambda cursor: self.list_executions(
                prompt_name=prompt_name,
                status=status,
                execution_mode=execution_mode,
                prompt_mode=prompt_mode,
                since=since,
                until=until,
                limit=page_size,
                cursor=cursor,
            )
        )

    async def cancel_execution(self, execution_id: ExecutionRef) -> Execution:
        """See :meth:`PromptLedger.cancel_execution`."""
        return await self._run(self._ops.cancel_execution(execution_id))

    async def wait(
        self,
        execution_id: ExecutionRef,
        *,
        timeout: float | None = 60.0,  # noqa: ASYNC109 - the spec's wait(id, timeout)
        poll_interval: float = 0.1,
        max_interval: float = 2.0,
    ) -> Execution:
        """See :meth:`PromptLedger.wait`; sleeps with ``asyncio.sleep``."""
        return await self._run(
            self._ops.wait(
                execution_id,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    async def register_code(
        self,
        source: type | ModuleType,
        *,
        prefix: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[RegisteredPrompt]:
        """See :meth:`PromptLedger.register_code`."""
        return await self._run(self._ops.register_code(source, prefix=prefix, metadata=metadata))

    async def register_prompts(self, prompts: PromptSource) -> list[RegisteredPrompt]:
        """See :meth:`PromptLedger.register_prompts`."""
        return await self._run(self._ops.register_prompts(prompts))

    @overload
    async def execute(
        self,
        name: str,
        *,
        model_name: str | None = ...,
        variables: Mapping[str, Any] | None = ...,
        mode: Literal["sync"] = ...,
        version: VersionChoice = ...,
        provider: str | None = ...,
        params: Mapping[str, Any] | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        idempotency_key: str | None = ...,
        label: str | None = ...,
        subject: str | None = ...,
    ) -> Execution: ...

    @overload
    async def execute(
        self,
        name: str,
        *,
        model_name: str | None = ...,
        variables: Mapping[str, Any] | None = ...,
        mode: Literal["async"],
        version: VersionChoice = ...,
        provider: str | None = ...,
        params: Mapping[str, Any] | None = ...,
        metadata: Mapping[str, Any] | None = ...,
        idempotency_key: str | None = ...,
        label: str | None = ...,
        subject: str | None = ...,
    ) -> Submission: ...

    async def execute(
        self,
        name: str,
        *,
        model_name: str | None = None,
        variables: Mapping[str, Any] | None = None,
        mode: ExecutionMode = "sync",
        version: VersionChoice = None,
        provider: str | None = None,
        params: Mapping[str, Any] | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        label: str | None = None,
        subject: str | None = None,
    ) -> Execution | Submission:
        """See :meth:`PromptLedger.execute` (including how the version is chosen)."""
        return await self._run(
            self._ops.execute(
                name,
                model_name=model_name,
                variables=variables,
                mode=mode,
                version=version,
                provider=provider,
                params=params,
                metadata=metadata,
                idempotency_key=idempotency_key,
                label=label,
                subject=subject,
            )
        )

    async def history(self, name: str, *, mode: PromptMode | None = None) -> History:
        """See :meth:`PromptLedger.history`."""
        return await self._run(self._ops.history(name, mode=mode))

    async def convert(self, name: str, to: PromptMode) -> Prompt:
        """See :meth:`PromptLedger.convert`."""
        return await self._run(self._ops.convert(name, to))

    async def analytics(
        self,
        *,
        mode: AnalyticsMode = "all",
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: GroupBy | None = None,
    ) -> Analytics:
        """See :meth:`PromptLedger.analytics`."""
        return await self._run(
            self._ops.analytics(mode=mode, since=since, until=until, group_by=group_by)
        )

    async def list_models(self) -> list[Model]:
        """See :meth:`PromptLedger.list_models`."""
        return await self._run(self._ops.list_models())

    async def put_model(
        self,
        model_name: str,
        *,
        provider: str = "openai",
        max_tokens: int | None = None,
        supports_streaming: bool | None = None,
        is_active: bool | None = None,
        pricing: Pricing | Mapping[str, float | None] | None = None,
        remove_pricing: bool = False,
    ) -> Model:
        """See :meth:`PromptLedger.put_model`."""
        return await self._run(
            self._ops.put_model(
                model_name,
                provider=provider,
                max_tokens=max_tokens,
                supports_streaming=supports_streaming,
                is_active=is_active,
                pricing=pricing,
                remove_pricing=remove_pricing,
            )
        )
