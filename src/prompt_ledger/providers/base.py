"""The provider adapter interface, its result type and its error kinds (SPEC §7).

Services depend on this module only; adapters (``providers/openai.py``) translate their SDK's
exceptions into :class:`ProviderError` so that the retry policy can be decided from
``ProviderErrorKind`` alone, whichever provider ran.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple, Protocol, runtime_checkable

_REDACTED = "***"


class ProviderErrorKind(StrEnum):
    """Why a provider call failed; the value is what an execution stores as ``error.type``."""

    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    PROVIDER_ERROR = "provider_error"  # 5xx, connection refused/reset, malformed answer
    AUTH_ERROR = "auth_error"
    BAD_REQUEST = "bad_request"

    @property
    def retryable(self) -> bool:
        """Timeouts, 429 and 5xx/connection errors may succeed later; other 4xx never will."""
        return self in _RETRYABLE


_RETRYABLE = frozenset(
    {ProviderErrorKind.TIMEOUT, ProviderErrorKind.RATE_LIMITED, ProviderErrorKind.PROVIDER_ERROR}
)


class ProviderError(Exception):
    """A failed provider call, already classified.

    ``message`` is safe to store and show: adapters build it with :func:`redact` so that it never
    carries the provider key, and they raise it ``from None`` so that tracebacks do not print the
    SDK's original exception (whose text may quote the key).
    """

    def __init__(
        self, kind: ProviderErrorKind, message: str, status_code: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status_code = status_code

    @property
    def retryable(self) -> bool:
        return self.kind.retryable

    def __reduce__(self) -> tuple[Any, ...]:
        # Keeps the exception picklable (Celery result/traceback transport) despite the extra args.
        return (type(self), (self.kind, self.message, self.status_code))

    def __repr__(self) -> str:
        status = f", status_code={self.status_code}" if self.status_code is not None else ""
        return f"ProviderError({self.kind.value!r}, {self.message!r}{status})"


@dataclass(frozen=True, slots=True)
class ProviderResult:
    response_text: str
    prompt_tokens: int | None
    response_tokens: int | None
    latency_ms: int
    provider_request_id: str | None
    # Of prompt_tokens, how many the provider served from its prompt cache (priced lower).
    cached_prompt_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The last item of a provider stream: what the stream delivered in all.

    ``result.response_text`` is the whole text (the deltas joined), the token counts are the
    usage chunk's (None without one), ``latency_ms`` runs to the end of the stream.
    """

    result: ProviderResult
    finish_reason: str | None = None


StreamItem = str | StreamEnd
"""A text delta (non-empty), or the stream's end (always last, exactly once)."""


class MappedParams(NamedTuple):
    """Spec params translated by one provider's ``map_params``.

    A tuple, so ``sent, dropped = provider.map_params(params)`` keeps working; and accepted by
    that provider's ``generate``, so a caller that already mapped (to record ``dropped``) does
    not map again.
    """

    sent: dict[str, Any]
    dropped: list[str]


@runtime_checkable
class Provider(Protocol):
    """One LLM provider. Implementations must be safe to share between tasks and threads."""

    name: str

    def map_params(self, params: Mapping[str, Any]) -> MappedParams:
        """Translate spec params into the provider's request fields.

        Returns the fields that will be sent and the sorted names of the given params that the
        provider does not accept (recorded as the execution's ``params_dropped``). ``None``
        values count as absent: neither sent nor dropped.
        """
        ...

    async def generate(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        *,
        model: str,
        params: Mapping[str, Any] | MappedParams,
        response_format: Mapping[str, Any] | None = None,
    ) -> ProviderResult:
        """Call the provider once (never retries); raises :class:`ProviderError` on failure.

        ``prompt`` is a text version's rendered text (sent as one user message) or a chat
        version's rendered ``{role, content}`` messages (sent as they are). ``params`` are
        spec params, or what this provider's :meth:`map_params` made of them;
        ``response_format`` (a version config's) is passed through as given.
        """
        ...

    def stream(
        self,
        prompt: str | Sequence[Mapping[str, str]],
        *,
        model: str,
        params: Mapping[str, Any] | MappedParams,
        response_format: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[StreamItem]:
        """Call the provider once, streaming: text deltas as they arrive, then a
        :class:`StreamEnd`. Raises :class:`ProviderError` before or during the stream.
        Closing the iterator early (``aclose``) ends the provider call (its connection)."""
        ...

    async def aclose(self) -> None:
        """Release pooled connections."""
        ...


def redact(text: str, secrets: Iterable[str | None]) -> str:
    """Replace every occurrence of each non-empty secret in ``text``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, _REDACTED)
    return text
