"""The model registry (SPEC §9.5): which models runs may use, their limits and prices.

A model is never deleted (executions point at it); it is retired with ``is_active: false``,
after which new runs against it are 422 ``unknown_model`` (``services.executions``) while
its executions stay readable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db import repositories as repo
from prompt_ledger.db.tables import Model, ProviderName

DEFAULT_MAX_TOKENS = 4096
"""A new model's ``max_tokens`` when the request leaves it out."""


@dataclass(frozen=True, slots=True)
class Pricing:
    """USD per million tokens; cached input defaults to the input price when unset."""

    input_per_mtok: Decimal
    output_per_mtok: Decimal
    cached_input_per_mtok: Decimal | None = None


_UNSET: Any = object()


@dataclass(frozen=True, slots=True)
class ModelChanges:
    """The fields a request sent; the others stay as they are (new model: defaults).
    ``pricing=None`` removes the model's own pricing (costs then come from the library)."""

    max_tokens: int = _UNSET
    supports_streaming: bool = _UNSET
    is_active: bool = _UNSET
    pricing: Pricing | None = _UNSET

    def sent(self) -> dict[str, Any]:
        return {
            name: getattr(self, name)
            for name in ("max_tokens", "supports_streaming", "is_active", "pricing")
            if getattr(self, name) is not _UNSET
        }


def _pricing_columns(pricing: Pricing | None) -> dict[str, Decimal | None]:
    return {
        "input_per_mtok": pricing.input_per_mtok if pricing else None,
        "output_per_mtok": pricing.output_per_mtok if pricing else None,
        "cached_input_per_mtok": pricing.cached_input_per_mtok if pricing else None,
    }


def pricing_of(model: Model) -> Pricing | None:
    if model.input_per_mtok is None or model.output_per_mtok is None:
        return None
    return Pricing(model.input_per_mtok, model.output_per_mtok, model.cached_input_per_mtok)


async def list_models(session: AsyncSession) -> Sequence[Model]:
    """Every model, active or retired, by provider and name."""
    return await repo.list_models(session)


async def put_model(
    session: AsyncSession, provider: ProviderName, model_name: str, *, changes: ModelChanges
) -> tuple[Model, bool]:
    """Add the model (the fields sent, defaults for the rest) or update the fields sent.
    Returns the model as it now is and whether it was created."""
    sent = changes.sent()
    columns: dict[str, Any] = {k: v for k, v in sent.items() if k != "pricing"}
    if "pricing" in sent:
        columns |= _pricing_columns(sent["pricing"])
    defaults: dict[str, Any] = {
        "max_tokens": DEFAULT_MAX_TOKENS,
        "supports_streaming": True,
        "is_active": True,
        **_pricing_columns(None),
    }
    model, created = await repo.lock_or_create_model(
        session, provider, model_name, defaults=defaults | columns
    )
    if not created:
        for name, value in columns.items():
            setattr(model, name, value)
        await session.flush()
    return model, created
