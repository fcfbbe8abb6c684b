"""Which adapter serves which ``provider_name``: the one place to add a provider."""

from __future__ import annotations

from collections.abc import Mapping

from prompt_ledger.config import Settings
from prompt_ledger.domain import ProviderName
from prompt_ledger.providers.base import Provider
from prompt_ledger.providers.openai import openai_provider_from_settings


def providers_from_settings(settings: Settings) -> dict[ProviderName, Provider]:
    return {ProviderName.OPENAI: openai_provider_from_settings(settings)}


async def close_providers(providers: Mapping[ProviderName, Provider]) -> None:
    for provider in providers.values():
        await provider.aclose()
