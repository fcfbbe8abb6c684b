"""The client's prompt cache (SPEC §9.3): stale-while-revalidate, one refresh per key.

Rules, in one place for both clients:

- A key is ``(name, "version", N)`` or ``(name, "label", L)`` (no label and no version is the
  label ``active``). A version is immutable: once fetched it stays cached. A label entry is
  *fresh* for ``cache_ttl_s`` seconds after it was fetched or revalidated.
- A stale entry is returned at once, and the caller is told to start a background refresh —
  at most one per key at a time (*single flight*). The refresh sends ``If-None-Match`` with the
  entry's ETag: 304 keeps the entry and restarts its clock, 200 replaces it.
- A failed refresh keeps the entry (an outage serves the last known prompt however old) and
  waits ``RETRY_AFTER_S`` (or the ttl, if shorter) before the next attempt, so an outage does
  not turn every call into a request.
- Saving, activating or registering through the same client drops the name's label entries
  (versions are immutable and stay). A refresh that was in flight when its name was dropped
  does not store its (possibly older) answer: each name has a generation, bumped on drop.
- ``cache_ttl_s=0`` bypasses the cache entirely: nothing read, nothing stored.

The class holds state only; the clients perform the requests (``_core.Operations``). One
``threading.Lock`` guards it: its critical sections are a few dict operations, so it is safe to
take from the event loop of the async client as well as from the sync client's threads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prompt_ledger.client.errors import PromptLedgerClientError, error_class
from prompt_ledger.client.models import Version

RETRY_AFTER_S = 5.0
"""After a failed background refresh, wait this long (at most the ttl) before the next one."""

RENDER_TIMEOUT_S = 2.0
"""A local render running longer is a ``RenderError``, as on the server (RENDER_TIMEOUT_S)."""

CacheKey = tuple[str, Literal["label", "version"], str | int]
Message = dict[str, str]


def cache_key(name: str, *, label: str | None, version: int | None) -> CacheKey:
    if label is not None and version is not None:
        raise error_class(422, "validation_error")(
            "give either label or version, not both",
            code="validation_error",
            details={"label": label, "version": version},
        )
    if version is not None:
        return (name, "version", int(version))
    return (name, "label", label or "active")


def _render_text(source: str, variables: Mapping[str, Any], timeout_s: float) -> str:
    # The server's sandbox (SPEC §5), not a second one: same limits, same errors.
    from prompt_ledger.services import rendering

    with _as_client_error():
        return rendering.render(source, variables, timeout_s=timeout_s)


def _render_messages(
    messages: Sequence[Mapping[str, Any]], variables: Mapping[str, Any], timeout_s: float
) -> list[Message]:
    # The server's chat rendering: one deadline and size budget, the placeholder filled.
    from prompt_ledger.services import rendering

    with _as_client_error():
        return rendering.render_messages(messages, variables, timeout_s=timeout_s)


@contextlib.contextmanager
def _as_client_error() -> Iterator[None]:
    """A server-side rendering error as the client's typed error with the same code."""
    from prompt_ledger.errors import PromptLedgerError

    try:
        yield
    except PromptLedgerError as exc:
        raise error_class(exc.status, exc.code)(
            exc.message, status=exc.status, code=exc.code, details=exc.details
        ) from exc


@dataclass(frozen=True, slots=True)
class SplitShare:
    """One entry of a split label: a version and its share of the 100 buckets."""

    version: int
    weight: int


@dataclass(frozen=True, slots=True)
class CachedPrompt:
    """A prompt resolved by :meth:`PromptLedger.get_prompt`, renderable without the server.

    Attributes:
        name: the prompt's name.
        label: the label it was resolved by (``None`` when resolved by version).
        version: the resolved version; ``None`` for a fallback.
        template_source: the template text (the fallback's text for a fallback).
        messages: for a fallback given as messages, the ``{role, content}`` templates.
        is_fallback: ``True`` when the server could not be reached and nothing was cached,
            so this is the ``fallback`` the caller passed.
        split: for a split label as cached, its entries (``get_prompt`` answers the variant
            it chose, with ``split`` None); ``variants`` holds their versions by number.
    """

    name: str
    label: str | None
    version: Version | None
    template_source: str | None
    messages: tuple[dict[str, Any], ...] | None = None
    is_fallback: bool = False
    split: tuple[SplitShare, ...] | None = None
    variants: Mapping[int, Version] | None = None

    @classmethod
    def of(cls, name: str, label: str | None, version: Version) -> CachedPrompt:
        messages = tuple(version.messages) if version.messages is not None else None
        return cls(name, label, version, version.template_source, messages)

    @classmethod
    def of_split(
        cls,
        name: str,
        label: str,
        split: Sequence[SplitShare],
        variants: Mapping[int, Version],
    ) -> CachedPrompt:
        return cls(name, label, None, None, split=tuple(split), variants=dict(variants))

    def choose(self, subject: str | None) -> CachedPrompt:
        """The prompt one use gets: a split picks its variant as the server does (SPEC §9.2:
        by ``subject``, deterministically, else at random); anything else is itself."""
        if self.split is None:
            return self
        from prompt_ledger.domain import choose_variant

        assert self.label is not None and self.variants is not None
        entry = choose_variant(self.name, self.label, self.split, subject)
        return CachedPrompt.of(self.name, self.label, self.variants[entry.version])

    @classmethod
    def fallback_of(
        cls, name: str, label: str | None, fallback: str | Sequence[Mapping[str, str]]
    ) -> CachedPrompt:
        if isinstance(fallback, str):
            return cls(name, label, None, fallback, is_fallback=True)
        messages = tuple({"role": m["role"], "content": m["content"]} for m in fallback)
        return cls(name, label, None, None, messages=messages, is_fallback=True)

    @property
    def active_version(self) -> Version | None:
        """``version``, under the name the former ``get_prompt`` (now ``describe_prompt``)
        answered it by, so code that read ``get_prompt(name).active_version`` keeps working."""
        return self.version

    @property
    def version_number(self) -> int | None:
        return self.version.version_number if self.version else None

    @property
    def checksum(self) -> str | None:
        return self.version.checksum if self.version else None

    def render(
        self, variables: Mapping[str, Any] | None = None, *, timeout_s: float = RENDER_TIMEOUT_S
    ) -> str | list[Message]:
        """Render locally, under the server's sandbox rules (SPEC §5).

        Returns:
            The text, or for a chat version (or a messages fallback) the list of rendered
            ``{role, content}`` messages, a placeholder filled from ``variables``.

        Raises:
            RenderError: a missing variable, a sandbox violation or a render over the time.
            PromptTooLargeError: a rendered text over 200 KB.

        Example::

            client.get_prompt("welcome").render({"name": "Ada"})  # 'Hello Ada!'
        """
        values = variables or {}
        if self.messages is not None:
            return _render_messages(self.messages, values, timeout_s)
        if self.template_source is None:
            raise TypeError("a split label as cached: render the variant `choose()` returns")
        return _render_text(self.template_source, values, timeout_s)


@dataclass(slots=True)
class _Entry:
    prompt: CachedPrompt
    etag: str
    checked_at: float  # monotonic: fetched or revalidated
    retry_at: float = 0.0  # monotonic: no refresh before this (after a failed one)


class PromptCache:
    """Entries, in-flight refreshes and per-name generations; see the module docstring."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[CacheKey, _Entry] = {}
        self._refreshing: set[CacheKey] = set()
        self._generation: dict[str, int] = {}

    def lookup(self, key: CacheKey, ttl_s: float) -> tuple[CachedPrompt | None, bool]:
        """The cached prompt (``None`` on a miss) and whether the caller must refresh it now.

        ``True`` means this caller owns the key's one refresh and must call :meth:`revalidated`
        or :meth:`refresh_failed` when it ends.
        """
        if ttl_s <= 0:
            return None, False
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None, False
            if key[1] == "version" or now - entry.checked_at < ttl_s:
                return entry.prompt, False
            if key in self._refreshing or now < entry.retry_at:
                return entry.prompt, False
            self._refreshing.add(key)
            return entry.prompt, True

    def etag(self, key: CacheKey) -> str | None:
        with self._lock:
            entry = self._entries.get(key)
            return entry.etag if entry else None

    def generation(self, name: str) -> int:
        with self._lock:
            return self._generation.get(name, 0)

    def store(self, key: CacheKey, prompt: CachedPrompt, etag: str, *, generation: int) -> None:
        """Keep a fetched prompt, unless its name was dropped since the fetch began."""
        with self._lock:
            if self._generation.get(key[0], 0) == generation:
                self._entries[key] = _Entry(prompt, etag, time.monotonic())

    def revalidated(
        self, key: CacheKey, prompt: CachedPrompt | None, etag: str, *, generation: int
    ) -> None:
        """A refresh ended: 304 (``prompt`` None: the entry is fresh again) or a new answer."""
        with self._lock:
            self._refreshing.discard(key)
            if self._generation.get(key[0], 0) != generation:
                return
            entry = self._entries.get(key)
            if prompt is not None:
                self._entries[key] = _Entry(prompt, etag, time.monotonic())
            elif entry is not None:
                entry.checked_at = time.monotonic()
                entry.retry_at = 0.0

    def refresh_failed(self, key: CacheKey, ttl_s: float) -> None:
        with self._lock:
            self._refreshing.discard(key)
            entry = self._entries.get(key)
            if entry is not None:
                entry.retry_at = time.monotonic() + min(RETRY_AFTER_S, ttl_s)

    def drop_labels(self, name: str) -> None:
        """A pointer of ``name`` moved (or may have): forget what its labels resolved to."""
        with self._lock:
            self._generation[name] = self._generation.get(name, 0) + 1
            for key in [k for k in self._entries if k[0] == name and k[1] == "label"]:
                del self._entries[key]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def unreachable(exc: PromptLedgerClientError) -> bool:
    """The server could not answer: no connection, a timeout, or a 5xx."""
    from prompt_ledger.client.errors import ServerError, TransportError

    return isinstance(exc, (TransportError, ServerError))
