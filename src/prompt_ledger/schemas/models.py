"""The model registry's bodies (SPEC §9.5) in OpenAI's list shape (SPEC §10.2)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from prompt_ledger.db.tables import Model, ProviderName
from prompt_ledger.schemas.common import MAX_INT32, StrictModel
from prompt_ledger.services import models as service

# USD per million tokens: at most $1,000,000/Mtok and six decimals (what the column keeps).
PricePerMtok = Annotated[Decimal, Field(ge=0, le=1_000_000, decimal_places=6)]


class PricingIn(StrictModel):
    input_per_mtok: PricePerMtok
    output_per_mtok: PricePerMtok
    cached_input_per_mtok: PricePerMtok | None = None


class PutModelRequest(StrictModel):
    """Only the fields sent change; a new model takes defaults for the others
    (max_tokens 4096, streaming and active true, no pricing of its own).
    ``pricing: null`` removes the model's pricing (costs then come from genai-prices)."""

    max_tokens: Annotated[int, Field(ge=1, le=MAX_INT32)] = service.DEFAULT_MAX_TOKENS
    supports_streaming: bool = True
    is_active: bool = True
    pricing: PricingIn | None = None

    def changes(self) -> service.ModelChanges:
        sent = {name: getattr(self, name) for name in self.model_fields_set}
        if "pricing" in sent and sent["pricing"] is not None:
            p = sent["pricing"]
            sent["pricing"] = service.Pricing(
                p.input_per_mtok, p.output_per_mtok, p.cached_input_per_mtok
            )
        return service.ModelChanges(**sent)


class PricingOut(BaseModel):
    input_per_mtok: float
    output_per_mtok: float
    cached_input_per_mtok: float | None


class ModelOut(BaseModel):
    """One model: OpenAI's ``model`` object plus PromptLedger's fields."""

    id: str = Field(description="the model name, as runs and the OpenAI SDK name it")
    object: Literal["model"] = "model"
    owned_by: str = Field(description="the provider")
    provider: ProviderName
    max_tokens: int
    supports_streaming: bool
    is_active: bool
    pricing: PricingOut | None = Field(
        description="the model's own prices (USD per million tokens); null: none, costs "
        "are priced from genai-prices' table"
    )

    @classmethod
    def of(cls, model: Model) -> ModelOut:
        pricing = service.pricing_of(model)
        return cls(
            id=model.model_name,
            owned_by=model.provider.value,
            provider=model.provider,
            max_tokens=model.max_tokens,
            supports_streaming=model.supports_streaming,
            is_active=model.is_active,
            pricing=PricingOut(
                input_per_mtok=float(pricing.input_per_mtok),
                output_per_mtok=float(pricing.output_per_mtok),
                cached_input_per_mtok=float(pricing.cached_input_per_mtok)
                if pricing.cached_input_per_mtok is not None
                else None,
            )
            if pricing
            else None,
        )


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelOut]
