"""LLM provider adapters behind one interface (SPEC §7)."""

from prompt_ledger.providers.base import (
    MappedParams,
    Provider,
    ProviderError,
    ProviderErrorKind,
    ProviderResult,
    StreamEnd,
    StreamItem,
)

__all__ = [
    "MappedParams",
    "Provider",
    "ProviderError",
    "ProviderErrorKind",
    "ProviderResult",
    "StreamEnd",
    "StreamItem",
]
