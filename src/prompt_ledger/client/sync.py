"""The blocking client, over ``httpx.Client``. Its async twin is ``client/aio.py``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
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

REFRESH_THREADS = 4  # background cache refreshes at once (each one is one short GET)


class PromptLedger(ClientBase):
    """Blocking client for the PromptLedger API.

    Args:
        base_url: the service's URL; default ``$PROMPTLEDGER_URL``, else
            ``http://127.0.0.1:8000``. A path prefix (behind a proxy) is kept.
        api_key: the ``X-API-Key`` value; default ``$PROMPTLEDGER_API_KEY``.
        timeout: per-request timeout in seconds or an ``httpx.Timeout`` (default: 120 s read,
            10 s connect — a sync run waits for the provider).
        http_client: an ``httpx.Client`` to send requests with (its own settings are kept;
            the client adds the API key per request and does not close it).
        transport: an ``httpx.BaseTransport`` for the client's own ``httpx.Client``
            (ignored when ``http_client`` is given).

    Example::

        from prompt_ledger.client import PromptLedger

        with PromptLedger("http://127.0.0.1:8000", api_key="pl_…") as client:
            client.save_prompt("welcome", "Hello {{ name }}!")
            execution = client.run("welcome", variables={"name": "Ada"}, model_name="gpt-4o-mini")
            print(execution.response_text)
    """

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        http_client: httpx.Client | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout, transport=transport)
        self._refresh_pool: ThreadPoolExecutor | None = None
        self._refresher_lock = threading.Lock()

    # --- the transport: the only code the async client does differently --------------------

    def _run(self, flow: Flow[T]) -> T:
        try:
            effect = flow.send(None)
            while True:
                try:
                    reply = self._perform(effect)
                except TransportError as exc:  # the flow may handle it (the cache's fallback)
                    effect = flow.throw(exc)
                else:
                    effect = flow.send(reply)
        except StopIteration as done:
            result: T = done.value
            return result
        finally:
            flow.close()

    def _perform(self, effect: Effect) -> httpx.Response | None:
        if not isinstance(effect, Call):
            time.sleep(effect.seconds)
            return None
        request = self._http.build_request(**self._request_args(effect))
        try:
            return self._http.send(request)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, str(request.url)) from exc

    def _paginate(self, fetch: Callable[[str | None], Page[T]]) -> Iterator[T]:
        cursor: str | None = None
        while True:
            page = fetch(cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def close(self) -> None:
        """Close the HTTP connections (not those of an ``http_client`` passed in).

        Waits for background cache refreshes still running (each is one request).
        """
        with self._refresher_lock:
            pool, self._refresh_pool = self._refresh_pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- operations ---------------------------------------------------------------------------

    def health(self) -> Health:
        """Liveness: ``GET /health`` (no API key needed).

        Returns:
            ``Health(status="healthy")``.

        Raises:
            TransportError: the service cannot be reached.

        Example::

            assert client.health().status == "healthy"
        """
        return self._run(self._ops.health(ready=False))

    def ready(self) -> Health:
        """Readiness: ``GET /health/ready`` — the database (and Redis, if used) answer.

        Returns:
            ``Health(status="ready", database="up", …)``.

        Raises:
            UnavailableError: a dependency is down (503).

        Example::

            client.ready()
        """
        return self._run(self._ops.health(ready=True))

    def save_prompt(
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
        """Create a full-mode prompt or save a version of it (``PUT /v1/prompts/{name}``).

        Identical content creates nothing: the existing version is returned (and made active
        unless ``activate=False``). New content (a changed config alone is new content)
        becomes version max+1.

        Args:
            name: 1-128 chars of ``A-Za-z0-9._-``, starting with a letter or digit.
            template_source: the Jinja2 template of a text version, or a ``TextPrompt`` /
                ``ChatPrompt`` carrying its own messages, config and schema.
            messages: instead of ``template_source``, a chat version's messages:
                ``{"role", "content"}`` (content a template) and at most one
                ``{"type": "placeholder", "name": ...}``.
            config: ``{model_name?, provider?, params?, response_format?}``: the model it
                was written for (runs may then omit ``model_name``; their params override).
            variables_schema: a JSON Schema (draft 2020-12) the run's variables must match.
            description: updates the prompt's description when given.
            metadata: stored on a newly created version.
            activate: ``False`` saves new text as a ``draft``.

        Returns:
            The version saved or reused, and ``created`` (whether it is new).

        Raises:
            ModeMismatchError: the prompt is in tracking mode (its text lives in code).
            InvalidTemplateError: the text is not valid Jinja2.
            ValidationError: a bad name or field, or an invalid ``variables_schema``.
            ValueError: neither or both of ``template_source`` and ``messages``.

        Example::

            saved = client.save_prompt("welcome", "Hello {{ name }}!", description="greeting")
            saved.version.version_number, saved.created  # (1, True)
            client.save_prompt(
                "support",
                messages=[{"role": "system", "content": "Be brief."},
                          {"type": "placeholder", "name": "history"}],
                config={"model_name": "gpt-4o-mini", "params": {"temperature": 0.2}},
            )
        """
        return self._run(
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

    def describe_prompt(self, name: str) -> Prompt:
        """A prompt and its active version (``GET /v1/prompts/{name}``), never cached.

        Returns:
            The prompt; ``active_version`` is ``None`` while it only has drafts.

        Raises:
            NotFoundError: no prompt of that name.

        Example::

            client.describe_prompt("welcome").active_version.template_source
        """
        return self._run(self._ops.get_prompt(name))

    def get_prompt(
        self,
        name: str,
        *,
        label: str | None = None,
        version: int | None = None,
        cache_ttl_s: float = 60,
        fallback: Fallback | None = None,
        subject: str | None = None,
    ) -> CachedPrompt:
        """The version a label (default ``active``) or number points to, cached (SPEC §9.3).

        A version stays cached for good; a label is fresh for ``cache_ttl_s`` seconds, after
        which the cached prompt is returned at once and one background thread per key
        revalidates it (``If-None-Match``). While the server cannot be reached (connection
        error, timeout, 5xx) a cached prompt is served however old. Saving, activating or
        registering through this client drops the name's label entries.

        Args:
            name: the prompt.
            label: a label (``"active"`` when neither label nor version is given).
            version: a version number (immutable: cached once, never refetched).
            cache_ttl_s: how long a label entry is fresh; ``0`` turns caching off (nothing
                kept, nothing served in an outage).
            fallback: a template string, or a list of ``{role, content}`` messages, returned
                (``is_fallback=True``) when the server cannot be reached and nothing is cached.
            subject: for a split label, the user or session whose variant to answer: the
                same bucket as a run with this ``subject`` gets (SPEC §9.2); random without.
                The split itself is cached, so the choice needs no request.

        Returns:
            A :class:`CachedPrompt`; ``render(variables)`` renders it locally.

        Raises:
            NotFoundError: unknown prompt, version or label, or no active version.
            TransportError / ServerError: the server cannot be reached, nothing is cached and
                there is no ``fallback``.

        Example::

            prompt = client.get_prompt("welcome", fallback="Hello {{ name }}!")
            prompt.render({"name": "Ada"})  # 'Hello Ada!', even through an outage
        """
        key = cache_key(name, label=label, version=version)
        cached, refresh = self._ops.cache.lookup(key, cache_ttl_s)
        if refresh:
            self._refresher().submit(
                self._run_refresh, self._ops.refresh_prompt(key, cache_ttl_s=cache_ttl_s)
            )
        if cached is not None:
            return cached.choose(subject)
        fetched = self._run(self._ops.fetch_prompt(key, cache_ttl_s=cache_ttl_s, fallback=fallback))
        return fetched.choose(subject)

    def _refresher(self) -> ThreadPoolExecutor:
        with self._refresher_lock:
            if self._refresh_pool is None:
                self._refresh_pool = ThreadPoolExecutor(
                    max_workers=REFRESH_THREADS, thread_name_prefix="promptledger-refresh"
                )
            return self._refresh_pool

    def _run_refresh(self, flow: Flow[None]) -> None:
        self._run(flow)  # refresh_prompt never raises

    def list_prompts(
        self,
        *,
        mode: PromptMode | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[PromptSummary]:
        """One page of prompts, by name (``GET /v1/prompts``). See :meth:`iter_prompts`.

        Args:
            mode: only ``"full"`` or only ``"tracking"`` prompts.
            limit: page size, 1-500 (server default 50).
            cursor: ``next_cursor`` of the previous page.

        Returns:
            ``Page(items=[PromptSummary…], next_cursor=…)``; ``next_cursor`` is ``None`` on
            the last page.

        Raises:
            ValidationError: ``limit`` out of range.
            BadRequestError: a cursor this API did not return.

        Example::

            page = client.list_prompts(mode="full", limit=20)
        """
        return self._run(self._ops.list_prompts(mode=mode, limit=limit, cursor=cursor))

    def iter_prompts(
        self, *, mode: PromptMode | None = None, page_size: int = 100
    ) -> Iterator[PromptSummary]:
        """Every prompt, by name, fetching pages of ``page_size`` as the loop goes.

        Example::

            names = [p.name for p in client.iter_prompts(mode="tracking")]
        """
        return self._paginate(
            lambda cursor: self.list_prompts(mode=mode, limit=page_size, cursor=cursor)
        )

    def list_versions(self, name: str) -> list[Version]:
        """Every version of a prompt, newest first (``GET /v1/prompts/{name}/versions``).

        Raises:
            NotFoundError: no prompt of that name.

        Example::

            [v.version_number for v in client.list_versions("welcome")]  # [2, 1]
        """
        return self._run(self._ops.list_versions(name))

    def activate_version(self, name: str, version_number: int) -> Prompt:
        """Make an existing version the active one: a rollback is a pointer move.

        Returns:
            The prompt with its new active version.

        Raises:
            NotFoundError: unknown prompt or version.
            ModeMismatchError: the prompt is in tracking mode (its code decides).

        Example::

            client.activate_version("welcome", 1)
        """
        return self._run(self._ops.activate_version(name, version_number))

    def list_events(self, name: str) -> list[PromptEvent]:
        """A prompt's history, oldest first: created, version_created, activated, converted.

        Raises:
            NotFoundError: no prompt of that name.

        Example::

            [(e.type, e.version_number) for e in client.list_events("welcome")]
        """
        return self._run(self._ops.list_events(name))

    def list_labels(self, name: str) -> list[Label]:
        """Every label of a prompt (``GET /v1/prompts/{name}/labels``): ``active`` first.

        Returns:
            Each label with its ``version_number`` or its ``split``.

        Raises:
            NotFoundError: no prompt of that name.

        Example::

            {x.label: x.version_number or x.split for x in client.list_labels("welcome")}
        """
        return self._run(self._ops.list_labels(name))

    def set_label(
        self,
        name: str,
        label: str,
        *,
        version: int | None = None,
        split: SplitSpec | None = None,
    ) -> Label:
        """Point ``label`` at one version or at a traffic split (``PUT .../labels/{label}``).

        Moving ``active`` is an activation (full mode only). Each move is logged as a
        ``label_moved`` event.

        Args:
            name: the prompt.
            label: ``[a-z0-9][a-z0-9._-]{0,63}``, e.g. ``"production"``.
            version: the version to point at; or
            split: 2-10 ``(version, weight)`` pairs (or ``{"version", "weight"}`` mappings),
                distinct versions, integer weights summing to 100.

        Raises:
            ValidationError: a bad label name or split, or a split naming unknown versions.
            NotFoundError: unknown prompt or version.
            ModeMismatchError: moving ``active`` of a tracking-mode prompt.

        Example::

            client.set_label("welcome", "production", version=3)
            client.set_label("welcome", "ab", split=[(3, 90), (4, 10)])
        """
        return self._run(self._ops.set_label(name, label, version=version, split=split))

    def delete_label(self, name: str, label: str) -> None:
        """Remove a label (``DELETE .../labels/{label}``); ``active`` cannot be removed.

        Raises:
            NotFoundError: unknown prompt or label.
            ValidationError: ``label`` is ``active``.

        Example::

            client.delete_label("welcome", "canary")
        """
        return self._run(self._ops.delete_label(name, label))

    def diff(self, name: str, from_version: int, to_version: int) -> Diff:
        """What changed between two versions (``GET /v1/prompts/{name}/diff``).

        Returns:
            ``unified`` (a unified diff of the templates) and ``changes`` (which parts
            differ, ``variables_added`` / ``variables_removed``).

        Raises:
            NotFoundError: unknown prompt or version.

        Example::

            print(client.diff("welcome", 1, 2).unified)
        """
        return self._run(self._ops.diff(name, from_version, to_version))

    def run(
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
        """Run a full-mode prompt now (``POST /v1/executions:run``) and return the execution.

        Args:
            prompt_name: the prompt to render.
            model_name: an active model of the provider (e.g. ``"gpt-4o-mini"``); may be
                omitted when the version's config names one.
            variables: the template's variables.
            version: a version number; default the active version.
            provider: default ``"openai"``.
            params: ``temperature``, ``top_p``, ``top_k``, ``max_new_tokens``,
                ``repetition_penalty``, over the version config's; ones the provider does not
                take are dropped and listed in ``params_dropped``.
            metadata: stored with the execution.
            idempotency_key: re-sending the same key and body replays the first answer
                (``execution.replayed`` is then ``True``) instead of running again.
            label: run the version this label points to, instead of ``version`` (giving both
                is a ``ValidationError``); a split label picks a variant per execution.
            subject: a user or session id: a split label then always gives it the same
                variant (while the split is unchanged); without it the pick is random.

        Returns:
            The execution, ``succeeded`` or ``failed`` (a provider failure is recorded, not
            raised: check ``execution.status`` and ``execution.error``).

        Raises:
            RenderError: a variable is missing (nothing is recorded).
            ValidationError: the variables fail the version's ``variables_schema``, or no
                ``model_name`` here nor in the version's config.
            NotFoundError: unknown prompt or version.
            ModeMismatchError: the prompt is in tracking mode (use :meth:`execute`).
            UnknownModelError: no such active model.
            IdempotencyKeyReusedError / IdempotencyKeyInUseError: see the spec.

        Example::

            e = client.run("welcome", variables={"name": "Ada"}, model_name="gpt-4o-mini")
            print(e.status, e.response_text, e.telemetry.latency_ms)
        """
        return self._run(
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

    def stream_run(
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
    ) -> Iterator[StreamEvent]:
        """Run a full-mode prompt streaming (``executions:run`` with ``stream: true``, SPEC
        §10.1): yields :class:`StreamStarted` (the row's id), :class:`StreamDelta` pieces of
        the answer as they arrive, then :class:`StreamDone` (the execution) or
        :class:`StreamFailed` (the failed execution keeps the partial text). Arguments as
        :meth:`run`; bad input raises as :meth:`run` does, before any event.

        Leaving the loop early (``break``, or closing the generator) hangs up: the server
        ends the provider call and records the execution as ``client_disconnected``. An
        idempotent replay yields only a :class:`StreamDone` (``execution.replayed``).

        Example::

            for event in client.stream_run("welcome", variables={"name": "Ada"}):
                if isinstance(event, StreamDelta):
                    print(event.text, end="", flush=True)
        """
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
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise error_from_transport(exc, str(request.url)) from exc
        try:
            if not response.is_success:
                response.read()
                raise error_from_response(response)
            if not streaming.is_event_stream(response):
                response.read()
                yield streaming.replayed_stream(response)
                return
            try:
                for sse in EventSource(response).iter_sse():
                    event = streaming.stream_event(response, sse.event, sse.data)
                    if event is not None:
                        yield event
            except httpx.TransportError as exc:
                raise error_from_transport(exc, str(request.url)) from exc
        finally:
            response.close()

    def submit(
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
        """Queue a full-mode prompt for the workers (``POST /v1/executions:submit``).

        Takes the same arguments as :meth:`run`; answers at once.

        Returns:
            ``Submission(execution_id, status="queued")``; pass it to :meth:`wait`.

        Raises:
            The same errors as :meth:`run`.

        Example::

            sub = client.submit("welcome", variables={"name": "Bob"}, model_name="gpt-4o-mini",
                                idempotency_key="order-42")
            done = client.wait(sub, timeout=30)
        """
        return self._run(
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

    def get_execution(self, execution_id: ExecutionRef) -> Execution:
        """One execution as the ledger has it now (``GET /v1/executions/{id}``).

        Args:
            execution_id: a UUID (or its string), or a ``Submission`` / ``Execution``.

        Raises:
            NotFoundError: no such execution.

        Example::

            client.get_execution(sub).status  # "queued", "running", "succeeded", …
        """
        return self._run(self._ops.get_execution(execution_id))

    def list_executions(
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
        """One page of executions, newest first (``GET /v1/executions``).

        Args:
            prompt_name, status, execution_mode, prompt_mode: filters.
            since, until: timezone-aware bounds on ``created_at``.
            limit: page size, 1-500 (server default 50).
            cursor: ``next_cursor`` of the previous page.

        Raises:
            ValueError: a naive datetime.
            ValidationError / BadRequestError: a bad filter or cursor.

        Example::

            page = client.list_executions(prompt_name="welcome", status="failed", limit=20)
        """
        return self._run(
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
    ) -> Iterator[Execution]:
        """Every matching execution, newest first, one page at a time (filters as above).

        Example::

            failed = sum(1 for _ in client.iter_executions(status="failed"))
        """
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

    def cancel_execution(self, execution_id: ExecutionRef) -> Execution:
        """Cancel a queued execution: it becomes ``canceled`` and never runs.

        Raises:
            NotCancelableError: it is already running or finished.
            NotFoundError: no such execution.

        Example::

            client.cancel_execution(sub).status  # "canceled"
        """
        return self._run(self._ops.cancel_execution(execution_id))

    def wait(
        self,
        execution_id: ExecutionRef,
        *,
        timeout: float | None = 60.0,
        poll_interval: float = 0.1,
        max_interval: float = 2.0,
    ) -> Execution:
        """Poll an execution until it is finished (succeeded, failed or canceled).

        Polls at once, then after ``poll_interval`` seconds, doubling each time up to
        ``max_interval``; the last pause is cut to the deadline and read once more there.

        Args:
            execution_id: a UUID (or its string), or the ``Submission`` from submit/execute.
            timeout: seconds to wait in all; ``None`` waits forever.
            poll_interval: the first pause.
            max_interval: the longest pause.

        Returns:
            The finished execution (check ``status``: a failure is a result, not an error).

        Raises:
            WaitTimeoutError: not finished in time; ``err.execution`` is the last seen state.
            NotFoundError: no such execution.

        Example::

            done = client.wait(client.submit("welcome", model_name="gpt-4o-mini"), timeout=30)
        """
        return self._run(
            self._ops.wait(
                execution_id,
                timeout=timeout,
                poll_interval=poll_interval,
                max_interval=max_interval,
            )
        )

    def register_code(
        self,
        source: type | ModuleType,
        *,
        prefix: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> list[RegisteredPrompt]:
        """Register a class's or module's prompts (tracking mode), e.g. at application start.

        Every UPPER_CASE attribute holding a prompt (a ``str``, a ``TextPrompt`` or
        ``ChatPrompt``, or a dict like ``{"messages": [...], "config": {...}}``) is a prompt
        named ``ClassName.ATTR`` (for a module, ``<last part of the module name>.ATTR``;
        ``prefix`` overrides the part before the dot, ``prefix=""`` drops it). A ``str`` is
        sent with its ``template_hash`` (sha256); the server versions each by content: the
        batch is all-or-nothing. The versions returned are kept
        in :attr:`registered`, which :meth:`execute` pins to.

        Args:
            source: a class or a module.
            prefix: the name prefix (see above).
            metadata: stored on any version this creates.

        Returns:
            One result per prompt: ``name``, ``version_number``, ``checksum``, ``change``
            (``created``, ``new_version``, ``unchanged`` or ``reactivated``) and
            ``previous_version_number``.

        Raises:
            ModeMismatchError: a name belongs to a full-mode prompt (nothing is written).
            InvalidTemplateError: a text is not valid Jinja2.
            TypeError / ValueError: ``source`` is not a class or module, or has no prompts.

        Example::

            class Prompts:
                WELCOME = "Hello {{ name }}!"

            client.register_code(Prompts)
            client.registered["Prompts.WELCOME"].version_number  # 1
        """
        return self._run(self._ops.register_code(source, prefix=prefix, metadata=metadata))

    def register_prompts(self, prompts: PromptSource) -> list[RegisteredPrompt]:
        """Register code-owned prompts by name (``POST /v1/prompts/register-code``).

        The general form of :meth:`register_code`.

        Args:
            prompts: ``{name: template_source | TextPrompt | ChatPrompt}`` or ``CodePrompt``
                items (which may carry a description and metadata).

        Returns and raises as :meth:`register_code`.

        Example::

            client.register_prompts({"support.reply": "Dear {{ customer }}, …"})
        """
        return self._run(self._ops.register_prompts(prompts))

    @overload
    def execute(
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
    def execute(
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

    def execute(
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
        """Run a tracking-mode prompt (``POST /v1/prompts/{name}/execute``).

        Version choice: when this client registered ``name`` (see :attr:`registered`) and
        ``version`` is not given, the execution is pinned to the version it registered —
        the text this process's code holds — even if another deployment has since registered
        newer text. ``version="active"`` runs whatever version is active on the server;
        an ``int`` runs that version.

        Args:
            name: the registered name, e.g. ``"Prompts.WELCOME"``.
            model_name, variables, provider, params, metadata, idempotency_key: as in
                :meth:`run`.
            mode: ``"sync"`` runs now and returns the ``Execution``; ``"async"`` queues it and
                returns a ``Submission`` for :meth:`wait`.
            version: see above.
            label, subject: as in :meth:`run`; with ``label`` the server picks the version
                (no pinning to the registered one).

        Raises:
            ModeMismatchError: the prompt is in full mode (use :meth:`run`).
            RenderError, NotFoundError, UnknownModelError, ...: as in :meth:`run`.

        Example::

            e = client.execute("Prompts.WELCOME", variables={"name": "Ada"},
                               model_name="gpt-4o-mini")
            sub = client.execute("Prompts.WELCOME", variables={"name": "Bob"},
                                 model_name="gpt-4o-mini", mode="async")
        """
        return self._run(
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

    def history(self, name: str, *, mode: PromptMode | None = None) -> History:
        """Versions newest first, each with its execution count and last execution time.

        Args:
            mode: if given, must be the prompt's mode (else ``ModeMismatchError``).

        Raises:
            NotFoundError: no prompt of that name.
            ModeMismatchError: ``mode`` is not the prompt's.

        Example::

            for v in client.history("Prompts.WELCOME").versions:
                print(v.version_number, v.execution_count)
        """
        return self._run(self._ops.history(name, mode=mode))

    def convert(self, name: str, to: PromptMode) -> Prompt:
        """Hand a prompt to the other side: ``"tracking"`` (code owns it) or ``"full"`` (API).

        Versions and executions are kept; converting to the mode it already has changes
        nothing. After ``to="tracking"``, ``save_prompt`` on it is a ``ModeMismatchError`` and
        ``register_code`` versions it; after ``to="full"``, the reverse.

        Returns:
            The prompt in its new mode.

        Raises:
            NotFoundError: no prompt of that name.
            ValidationError: ``to`` is not ``"full"`` or ``"tracking"``.

        Example::

            client.convert("welcome", to="tracking")
        """
        return self._run(self._ops.convert(name, to))

    def analytics(
        self,
        *,
        mode: AnalyticsMode = "all",
        since: datetime | None = None,
        until: datetime | None = None,
        group_by: GroupBy | None = None,
    ) -> Analytics:
        """Execution statistics per mode and per prompt (``GET /v1/analytics/prompts``).

        Args:
            mode: ``"all"``, ``"full"`` or ``"tracking"``.
            since: inclusive, timezone-aware.
            until: exclusive, timezone-aware.
            group_by: ``"version"``, ``"model"`` or ``"label"``: each prompt's ``groups`` break its
                executions down by it.

        Raises:
            ValueError: a naive datetime.

        Example::

            stats = client.analytics(mode="tracking")
            stats.by_mode.tracking.p95_latency_ms
        """
        return self._run(
            self._ops.analytics(mode=mode, since=since, until=until, group_by=group_by)
        )

    def list_models(self) -> list[Model]:
        """Every registered model, active or retired (``GET /v1/models``).

        Example::

            {m.id: m.pricing for m in client.list_models()}
        """
        return self._run(self._ops.list_models())

    def put_model(
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
        """Add a model or change the fields given (``PUT /v1/models/{provider}/{name}``);
        ``None`` leaves a field as it is (a new model takes the server's defaults).

        Args:
            model_name: as runs name it; may hold ``/`` (``org/model``).
            is_active: ``False`` retires the model: new runs are ``UnknownModelError``.
            pricing: USD per million tokens, ``{"input_per_mtok", "output_per_mtok",
                "cached_input_per_mtok"?}``; executions are priced with it.
            remove_pricing: drop the model's own pricing (costs then come from the
                server's price library, when it knows the model).

        Returns:
            The model as it now is; ``created`` tells whether it was added.

        Raises:
            ValidationError: a bad value (negative price, ``max_tokens`` < 1, …).

        Example::

            client.put_model("my-model", pricing={"input_per_mtok": 1, "output_per_mtok": 2})
        """
        return self._run(
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
