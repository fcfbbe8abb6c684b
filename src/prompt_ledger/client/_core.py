"""The one implementation behind both clients: requests, response parsing, and multi-step flows.

Each API operation is written once, as a generator (a *flow*) that yields effects — a
:class:`Call` to send or a :class:`Sleep` — and receives the :class:`httpx.Response` for each
call; its return value is the typed result. It does no I/O itself ("sans-I/O"), so the sync
client runs it with ``httpx.Client`` and ``time.sleep`` and the async client with
``httpx.AsyncClient`` and ``asyncio.sleep``; the two drivers are the only code that differs.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import ModuleType
from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
import pydantic

from prompt_ledger import __version__
from prompt_ledger.client.cache import (
    CachedPrompt,
    CacheKey,
    PromptCache,
    SplitShare,
    unreachable,
)
from prompt_ledger.client.errors import (
    PromptLedgerClientError,
    UnexpectedResponseError,
    ValidationError,
    WaitTimeoutError,
    error_from_response,
)
from prompt_ledger.client.models import (
    Analytics,
    AnalyticsMode,
    ApiModel,
    Diff,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    GroupBy,
    Health,
    History,
    Label,
    Model,
    ModelList,
    Page,
    Pricing,
    Prompt,
    PromptEvent,
    PromptMode,
    PromptSummary,
    RegisteredPrompt,
    ResolvedVersion,
    SavedPrompt,
    Submission,
    Version,
)
from prompt_ledger.client.registration import (
    ChatPrompt,
    CodePrompt,
    PromptContent,
    TextPrompt,
    collect_prompts,
    content_json,
)

T = TypeVar("T")
M = TypeVar("M", bound=pydantic.BaseModel)

DEFAULT_URL = "http://127.0.0.1:8000"
URL_ENV = "PROMPTLEDGER_URL"
API_KEY_ENV = "PROMPTLEDGER_API_KEY"
# A sync run waits for the provider (PROVIDER_TIMEOUT_S, 60 s by default): read longer than that.
DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=10.0)
BACKOFF_FACTOR = 2.0
REPLAYED_HEADER = "Idempotent-Replayed"

log = logging.getLogger("prompt_ledger.client")

ExecutionRef = uuid.UUID | str | Execution | Submission
PromptSource = Iterable[CodePrompt] | Mapping[str, PromptContent]
VersionChoice = int | Literal["active"] | None
# A split as the client takes it: (version, weight) pairs or {"version", "weight"} mappings.
SplitSpec = Iterable[tuple[int, int] | Mapping[str, int]]
Fallback = str | Sequence[Mapping[str, str]]


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to make, relative to the client's base URL."""

    method: str
    path: str
    params: dict[str, str | int] = field(default_factory=dict)
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Effect = Call | Sleep
Flow = Generator[Effect, Any, T]


class _Items(ApiModel):
    items: list[Any]


VERSION_FIELDS = set(Version.model_fields)


class _Resolved(ApiModel):
    """What tells the two answers of ``GET …/resolve`` apart: a split has ``split``."""

    split: list[SplitShare] | None = None
    versions: dict[str, Version] | None = None


class _Registered(ApiModel):
    results: list[RegisteredPrompt]


def send(call: Call) -> Generator[Effect, Any, httpx.Response]:
    """Yield the call; return its answer if it is a success, else raise its typed error."""
    response: httpx.Response = yield call
    if not response.is_success:
        raise error_from_response(response)
    return response


def unexpected(response: httpx.Response, expected: str, exc: Exception) -> UnexpectedResponseError:
    return UnexpectedResponseError(
        f"{response.request.method} {response.request.url} answered {response.status_code} "
        f"with a body that is not {expected}: {exc}",
        status=response.status_code,
    )


def parse(model: type[M], response: httpx.Response) -> M:
    try:
        return model.model_validate(response.json())
    except ValueError as exc:  # not JSON, or JSON of another shape (pydantic's error is one)
        raise unexpected(response, f"a {model.__name__}", exc) from exc


def parse_items(model: type[M], response: httpx.Response) -> list[M]:
    """The ``items`` of a ``{"items": [...]}`` body."""
    items = parse(_Items, response).items
    try:
        return [model.model_validate(item) for item in items]
    except ValueError as exc:
        raise unexpected(response, f"a list of {model.__name__}", exc) from exc


def replayed(response: httpx.Response) -> bool:
    value: str = response.headers.get(REPLAYED_HEADER, "")
    return value.lower() == "true"


def segment(value: object) -> str:
    """A path segment, percent-encoded.

    A ``/`` is refused here: servers decode ``%2F`` before routing, so ``a/versions`` would
    reach another route instead of being rejected as a name.
    """
    text = str(value)
    if "/" in text:
        raise ValidationError(
            f"{text!r} contains '/', which no prompt name or id may hold",
            code="validation_error",
            details={"value": text},
        )
    return quote(text, safe="")


def model_path(name: str) -> str:
    """A model name as path segments: it may hold ``/`` (``org/model``), which the route
    takes as part of the name; empty, ``.`` and ``..`` segments are refused (URLs resolve
    them)."""
    parts = name.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ValidationError(
            f"{name!r} is not a model name the API can address",
            code="validation_error",
            details={"value": name},
        )
    return "/".join(quote(part, safe="") for part in parts)


def timestamp(value: datetime, name: str) -> str:
    if value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(UTC))")
    return value.isoformat()


def execution_id(ref: ExecutionRef) -> str:
    if isinstance(ref, Execution):
        return str(ref.id)
    if isinstance(ref, Submission):
        return str(ref.execution_id)
    return str(ref)


def query(**values: object) -> dict[str, str | int]:
    """Query parameters without the ``None`` ones; datetimes as ISO-8601."""
    out: dict[str, str | int] = {}
    for key, value in values.items():
        if value is None:
            continue
        if isinstance(value, datetime):
            out[key] = timestamp(value, key)
        elif isinstance(value, int) and not isinstance(value, bool):
            out[key] = value
        else:
            out[key] = str(value)
    return out


def version_body(
    template_source: PromptContent | None,
    *,
    messages: Iterable[Mapping[str, Any]] | None,
    config: Mapping[str, Any] | None,
    variables_schema: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The content fields of a save: a text, a chat (``messages``), or a ``TextPrompt`` /
    ``ChatPrompt`` carrying its own config and schema."""
    if isinstance(template_source, TextPrompt | ChatPrompt):
        if messages is not None or config is not None or variables_schema is not None:
            raise ValueError(
                f"a {type(template_source).__name__} carries its own messages, config and "
                "variables_schema: do not pass them again"
            )
        return content_json(template_source)
    if (template_source is None) == (messages is None):
        raise ValueError("give exactly one of template_source (text) or messages (chat)")
    body: dict[str, Any] = (
        {"template_source": template_source}
        if template_source is not None
        else {"type": "chat", "messages": [dict(m) for m in messages or ()]}
    )
    if config is not None:
        body["config"] = dict(config)
    if variables_schema is not None:
        body["variables_schema"] = dict(variables_schema)
    return body


def execution_body(
    *,
    variables: Mapping[str, Any] | None,
    model_name: str | None,
    version: int | None,
    provider: str | None,
    params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    label: str | None = None,
    subject: str | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"variables": dict(variables or {})}
    if model_name is not None:  # None: the version config's model
        body["model_name"] = model_name
    if version is not None:
        body["version"] = version
    if label is not None:
        body["label"] = label
    if subject is not None:
        body["subject"] = subject
    if provider is not None:
        body["provider"] = provider
    if params:
        body["params"] = dict(params)
    if metadata:
        body["metadata"] = dict(metadata)
    return body


def run_call(
    prompt_name: str,
    *,
    model_name: str | None,
    variables: Mapping[str, Any] | None,
    version: int | None,
    provider: str | None,
    params: Mapping[str, Any] | None,
    metadata: Mapping[str, Any] | None,
    idempotency_key: str | None,
    label: str | None,
    subject: str | None,
    stream: bool = False,
) -> Call:
    """``POST /v1/executions:run``; with ``stream``, asking for the SSE answer (SPEC §10.1)."""
    body = execution_body(
        variables=variables,
        model_name=model_name,
        version=version,
        provider=provider,
        params=params,
        metadata=metadata,
        label=label,
        subject=subject,
    )
    headers = idempotency(idempotency_key)
    if stream:
        body["stream"] = True
        headers = {"Accept": "text/event-stream", **headers}
    return Call(
        "POST", "/v1/executions:run", json={"prompt_name": prompt_name, **body}, headers=headers
    )


def split_body(split: SplitSpec) -> list[dict[str, int]]:
    entries = []
    for entry in split:
        if isinstance(entry, Mapping):
            entries.append({"version": int(entry["version"]), "weight": int(entry["weight"])})
        else:
            version, weight = entry
            entries.append({"version": int(version), "weight": int(weight)})
    return entries


def idempotency(key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": key} if key is not None else {}


class Operations:
    """Every API operation as a flow, plus the client-side state (registered versions)."""

    def __init__(self) -> None:
        self.registered: dict[str, RegisteredPrompt] = {}
        self.cache = PromptCache()

    # --- prompts (full mode) ----------------------------------------------------------------

    def save_prompt(
        self,
        name: str,
        template_source: PromptContent | None,
        *,
        messages: Iterable[Mapping[str, Any]] | None,
        config: Mapping[str, Any] | None,
        variables_schema: Mapping[str, Any] | None,
        description: str | None,
        metadata: Mapping[str, Any] | None,
        activate: bool,
    ) -> Flow[SavedPrompt]:
        body = version_body(
            template_source, messages=messages, config=config, variables_schema=variables_schema
        )
        body["activate"] = activate
        if description is not None:
            body["description"] = description
        if metadata is not None:
            body["metadata"] = dict(metadata)
        try:
            response = yield from send(Call("PUT", f"/v1/prompts/{segment(name)}", json=body))
        finally:
            # Even a failed save may have landed (a timeout after the commit).
            self.cache.drop_labels(name)
        return parse(SavedPrompt, response)

    def get_prompt(self, name: str) -> Flow[Prompt]:
        response = yield from send(Call("GET", f"/v1/prompts/{segment(name)}"))
        return parse(Prompt, response)

    def list_prompts(
        self, *, mode: PromptMode | None, limit: int | None, cursor: str | None
    ) -> Flow[Page[PromptSummary]]:
        params = query(mode=mode, limit=limit, cursor=cursor)
        response = yield from send(Call("GET", "/v1/prompts", params=params))
        return parse(Page[PromptSummary], response)

    def list_versions(self, name: str) -> Flow[list[Version]]:
        response = yield from send(Call("GET", f"/v1/prompts/{segment(name)}/versions"))
        return parse_items(Version, response)

    def activate_version(self, name: str, version_number: int) -> Flow[Prompt]:
        path = f"/v1/prompts/{segment(name)}/versions/{int(version_number)}:activate"
        try:
            response = yield from send(Call("POST", path))
        finally:
            self.cache.drop_labels(name)
        return parse(Prompt, response)

    # --- resolve and the client cache (SPEC §9.3; rules in client/cache.py) ------------------

    def resolve(
        self, name: str, *, label: str | None, version: int | None, etag: str | None = None
    ) -> Flow[tuple[CachedPrompt, str] | None]:
        """What ``label`` or ``version`` resolves to (a version, or a split label with its
        versions) and its ETag; ``None`` when ``etag`` is still current (304)."""
        call = Call(
            "GET",
            f"/v1/prompts/{segment(name)}/resolve",
            params=query(label=label, version=version),
            headers={"If-None-Match": etag} if etag else {},
        )
        response: httpx.Response = yield call
        if response.status_code == 304:
            return None
        if not response.is_success:
            raise error_from_response(response)
        resolved = parse(_Resolved, response)
        if resolved.split is not None:
            assert label is not None  # only a label can name a split
            variants = {int(n): v for n, v in (resolved.versions or {}).items()}
            prompt = CachedPrompt.of_split(name, label, resolved.split, variants)
            return prompt, response.headers.get("ETag") or ""
        found = parse(ResolvedVersion, response)
        # the version alone (equal to the same version read from any other route)
        plain = Version.model_validate(found.model_dump(by_alias=True, include=VERSION_FIELDS))
        prompt = CachedPrompt.of(name, label or (None if version else "active"), plain)
        return prompt, response.headers.get("ETag") or f'"{found.checksum}"'

    def _resolve_key(
        self, key: CacheKey, etag: str | None
    ) -> Flow[tuple[CachedPrompt, str] | None]:
        name, kind, value = key
        label = value if kind == "label" else None
        version = value if kind == "version" else None
        assert label is None or isinstance(label, str)
        assert version is None or isinstance(version, int)
        return (yield from self.resolve(name, label=label, version=version, etag=etag))

    @staticmethod
    def _label(key: CacheKey) -> str | None:
        return key[2] if key[1] == "label" and isinstance(key[2], str) else None

    def fetch_prompt(
        self, key: CacheKey, *, cache_ttl_s: float, fallback: Fallback | None
    ) -> Flow[CachedPrompt]:
        """A cache miss: resolve, keep it (ttl > 0); unreachable server: the fallback or raise."""
        generation = self.cache.generation(key[0])
        try:
            found = yield from self._resolve_key(key, None)
        except PromptLedgerClientError as exc:
            if fallback is not None and unreachable(exc):
                log.warning("prompt %r: serving the fallback (%s)", key[0], exc)
                return CachedPrompt.fallback_of(key[0], self._label(key), fallback)
            raise
        assert found is not None  # no If-None-Match was sent
        prompt, etag = found
        if cache_ttl_s > 0:
            self.cache.store(key, prompt, etag, generation=generation)
        return prompt

    def refresh_prompt(self, key: CacheKey, *, cache_ttl_s: float) -> Flow[None]:
        """The one background revalidation of a stale key (its caller won ``lookup``'s flag).

        Never raises: a failure keeps the stale entry (logged) and delays the next attempt.
        """
        generation = self.cache.generation(key[0])
        try:
            found = yield from self._resolve_key(key, self.cache.etag(key))
        except Exception as exc:
            log.warning("prompt %r: refresh failed, serving the cached version (%s)", key[0], exc)
            self.cache.refresh_failed(key, cache_ttl_s)
            return None
        except BaseException:
            self.cache.refresh_failed(key, cache_ttl_s)
            raise
        if found is None:
            self.cache.revalidated(key, None, "", generation=generation)
        else:
            prompt, etag = found
            self.cache.revalidated(key, prompt, etag, generation=generation)
        return None

    def list_events(self, name: str) -> Flow[list[PromptEvent]]:
        response = yield from send(Call("GET", f"/v1/prompts/{segment(name)}/events"))
        return parse_items(PromptEvent, response)

    # --- labels and diff ----------------------------------------------------------------------

    def list_labels(self, name: str) -> Flow[list[Label]]:
        response = yield from send(Call("GET", f"/v1/prompts/{segment(name)}/labels"))
        return parse_items(Label, response)

    def set_label(
        self, name: str, label: str, *, version: int | None, split: SplitSpec | None
    ) -> Flow[Label]:
        if (version is None) == (split is None):
            raise ValueError("give exactly one of version and split")
        body: dict[str, Any] = (
            {"version": version} if version is not None else {"split": split_body(split or ())}
        )
        path = f"/v1/prompts/{segment(name)}/labels/{segment(label)}"
        try:
            response = yield from send(Call("PUT", path, json=body))
        finally:
            self.cache.drop_labels(name)
        return parse(Label, response)

    def delete_label(self, name: str, label: str) -> Flow[None]:
        path = f"/v1/prompts/{segment(name)}/labels/{segment(label)}"
        try:
            yield from send(Call("DELETE", path))
        finally:
            self.cache.drop_labels(name)
        return None

    def diff(self, name: str, from_version: int, to_version: int) -> Flow[Diff]:
        params = query(**{"from": int(from_version), "to": int(to_version)})
        response = yield from send(Call("GET", f"/v1/prompts/{segment(name)}/diff", params=params))
        return parse(Diff, response)

    # --- executions -------------------------------------------------------------------------

    def run(
        self,
        prompt_name: str,
        *,
        model_name: str | None,
        variables: Mapping[str, Any] | None,
        version: int | None,
        provider: str | None,
        params: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
        label: str | None = None,
        subject: str | None = None,
    ) -> Flow[Execution]:
        call = run_call(
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
        response = yield from send(call)
        return parse(Execution, response).model_copy(update={"replayed": replayed(response)})

    def submit(
        self,
        prompt_name: str,
        *,
        model_name: str | None,
        variables: Mapping[str, Any] | None,
        version: int | None,
        provider: str | None,
        params: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
        label: str | None = None,
        subject: str | None = None,
    ) -> Flow[Submission]:
        body = execution_body(
            variables=variables,
            model_name=model_name,
            version=version,
            provider=provider,
            params=params,
            metadata=metadata,
            label=label,
            subject=subject,
        )
        call = Call(
            "POST",
            "/v1/executions:submit",
            json={"prompt_name": prompt_name, **body},
            headers=idempotency(idempotency_key),
        )
        response = yield from send(call)
        return parse(Submission, response).model_copy(update={"replayed": replayed(response)})

    def get_execution(self, ref: ExecutionRef) -> Flow[Execution]:
        response = yield from send(Call("GET", f"/v1/executions/{segment(execution_id(ref))}"))
        return parse(Execution, response)

    def cancel_execution(self, ref: ExecutionRef) -> Flow[Execution]:
        path = f"/v1/executions/{segment(execution_id(ref))}:cancel"
        response = yield from send(Call("POST", path))
        return parse(Execution, response)

    def list_executions(
        self,
        *,
        prompt_name: str | None,
        status: ExecutionStatus | None,
        execution_mode: ExecutionMode | None,
        prompt_mode: PromptMode | None,
        since: datetime | None,
        until: datetime | None,
        limit: int | None,
        cursor: str | None,
    ) -> Flow[Page[Execution]]:
        params = query(
            prompt_name=prompt_name,
            status=status,
            execution_mode=execution_mode,
            prompt_mode=prompt_mode,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
        response = yield from send(Call("GET", "/v1/executions", params=params))
        return parse(Page[Execution], response)

    def wait(
        self,
        ref: ExecutionRef,
        *,
        timeout: float | None,
        poll_interval: float,
        max_interval: float,
    ) -> Flow[Execution]:
        """Poll until finished: intervals double from ``poll_interval`` up to ``max_interval``.

        The last sleep is cut to the deadline, and the execution is read once more there, so a
        run that finishes just in time is not reported as a timeout.
        """
        if poll_interval <= 0 or max_interval <= 0:
            raise ValueError("poll_interval and max_interval must be positive")
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be >= 0 (or None to wait forever)")
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(poll_interval, max_interval)
        while True:
            execution = yield from self.get_execution(ref)
            if execution.finished:
                return execution
            pause = delay
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise WaitTimeoutError(
                        f"execution {execution.id} is still {execution.status} after {timeout:g} s",
                        execution=execution,
                    )
                pause = min(delay, remaining)
            yield Sleep(pause)
            delay = min(delay * BACKOFF_FACTOR, max_interval)

    # --- tracking mode ----------------------------------------------------------------------

    def register_prompts(self, prompts: PromptSource) -> Flow[list[RegisteredPrompt]]:
        items = (
            [CodePrompt(name, text) for name, text in prompts.items()]
            if isinstance(prompts, Mapping)
            else list(prompts)
        )
        if not items:
            raise ValueError("nothing to register: give at least one prompt")
        body = {"prompts": [item.to_json() for item in items]}
        try:
            response = yield from send(Call("POST", "/v1/prompts/register-code", json=body))
        finally:
            for item in items:
                self.cache.drop_labels(item.name)
        results = parse(_Registered, response).results
        self.registered.update((result.name, result) for result in results)
        return results

    def register_code(
        self,
        source: type | ModuleType,
        *,
        prefix: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Flow[list[RegisteredPrompt]]:
        prompts = collect_prompts(source, prefix=prefix, metadata=metadata)
        return (yield from self.register_prompts(prompts))

    def resolve_version(self, name: str, version: VersionChoice) -> int | None:
        """Pin to the version this client registered, unless told otherwise (see execute)."""
        if version == "active":
            return None
        if version is None:
            known = self.registered.get(name)
            return known.version_number if known else None
        return version

    def execute(
        self,
        name: str,
        *,
        model_name: str | None,
        variables: Mapping[str, Any] | None,
        mode: ExecutionMode,
        version: VersionChoice,
        provider: str | None,
        params: Mapping[str, Any] | None,
        metadata: Mapping[str, Any] | None,
        idempotency_key: str | None,
        label: str | None = None,
        subject: str | None = None,
    ) -> Flow[Execution | Submission]:
        # A label chooses the version on the server: no pinning to the registered one.
        if label is None:
            pinned = self.resolve_version(name, version)
        else:
            pinned = version if isinstance(version, int) else None
        body = execution_body(
            variables=variables,
            model_name=model_name,
            version=pinned,
            provider=provider,
            params=params,
            metadata=metadata,
            label=label,
            subject=subject,
        )
        call = Call(
            "POST",
            f"/v1/prompts/{segment(name)}/execute",
            json={**body, "mode": mode},
            headers=idempotency(idempotency_key),
        )
        response = yield from send(call)
        result: Execution | Submission = (
            parse(Execution, response) if mode == "sync" else parse(Submission, response)
        )
        return result.model_copy(update={"replayed": replayed(response)})

    def history(self, name: str, *, mode: PromptMode | None) -> Flow[History]:
        path = f"/v1/prompts/{segment(name)}/history"
        response = yield from send(Call("GET", path, params=query(mode=mode)))
        return parse(History, response)

    def convert(self, name: str, to: PromptMode) -> Flow[Prompt]:
        call = Call("POST", f"/v1/prompts/{segment(name)}:convert", json={"to": to})
        response = yield from send(call)
        return parse(Prompt, response)

    # --- analytics and operations -----------------------------------------------------------

    def analytics(
        self,
        *,
        mode: AnalyticsMode,
        since: datetime | None,
        until: datetime | None,
        group_by: GroupBy | None = None,
    ) -> Flow[Analytics]:
        params = query(mode=mode, since=since, until=until, group_by=group_by)
        response = yield from send(Call("GET", "/v1/analytics/prompts", params=params))
        return parse(Analytics, response)

    # --- models -------------------------------------------------------------------------------

    def list_models(self) -> Flow[list[Model]]:
        response = yield from send(Call("GET", "/v1/models"))
        return parse(ModelList, response).data

    def put_model(
        self,
        model_name: str,
        *,
        provider: str,
        max_tokens: int | None,
        supports_streaming: bool | None,
        is_active: bool | None,
        pricing: Pricing | Mapping[str, float | None] | None,
        remove_pricing: bool,
    ) -> Flow[Model]:
        if pricing is not None and remove_pricing:
            raise ValueError("pass pricing or remove_pricing, not both")
        body: dict[str, Any] = {
            name: value
            for name, value in (
                ("max_tokens", max_tokens),
                ("supports_streaming", supports_streaming),
                ("is_active", is_active),
            )
            if value is not None
        }
        if isinstance(pricing, Pricing):
            body["pricing"] = pricing.model_dump()
        elif pricing is not None:
            body["pricing"] = dict(pricing)
        if remove_pricing:
            body["pricing"] = None
        path = f"/v1/models/{segment(provider)}/{model_path(model_name)}"
        response = yield from send(Call("PUT", path, json=body))
        return parse(Model, response).model_copy(update={"created": response.status_code == 201})

    def health(self, *, ready: bool) -> Flow[Health]:
        response = yield from send(Call("GET", "/health/ready" if ready else "/health"))
        return parse(Health, response)


class ClientBase:
    """Configuration and request preparation shared by both clients."""

    def __init__(self, base_url: str | None, api_key: str | None) -> None:
        url = base_url or os.environ.get(URL_ENV) or DEFAULT_URL
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {url!r}")
        self.base_url = url.rstrip("/")
        self._api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        self._ops = Operations()

    @property
    def registered(self) -> dict[str, RegisteredPrompt]:
        """What ``register_code`` / ``register_prompts`` returned, by prompt name.

        ``execute`` pins a registered name to the version recorded here. Example::

            client.register_code(Prompts)
            client.registered["Prompts.WELCOME"].version_number  # e.g. 3
        """
        return self._ops.registered

    def _request_args(self, call: Call) -> dict[str, Any]:
        headers = {"Accept": "application/json", "User-Agent": f"prompt-ledger/{__version__}"}
        if self._api_key:
            headers["X-API-Key"] = self._api_key
        headers.update(call.headers)
        args: dict[str, Any] = {
            "method": call.method,
            "url": self.base_url + call.path,
            "headers": headers,
        }
        if call.params:
            args["params"] = call.params
        if call.json is not None:
            args["json"] = call.json
        return args

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"  # never the key
