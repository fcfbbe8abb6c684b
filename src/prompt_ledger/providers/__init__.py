"""LLM provider adapters behind one interface (SPEC §7)."""

from prompt_ledger.providers.base import (
    SPEC_PARAMS,
    Provider,
    ProviderError,
    ProviderErrorKind,
    ProviderResult,
    is_retryable,
)

__all__ = [
    "SPEC_PARAMS",
    "Provider",
    "ProviderError",
    "ProviderErrorKind",
    "ProviderResult",
    "is_retryable",
]
