"""LLM provider adapters behind one interface (SPEC §7)."""

from prompt_ledger.providers.base import (
    Provider,
    ProviderError,
    ProviderErrorKind,
    ProviderResult,
)

__all__ = [
    "Provider",
    "ProviderError",
    "ProviderErrorKind",
    "ProviderResult",
]
