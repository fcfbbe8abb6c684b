"""What an execution cost (SPEC §9.5): the one place a price is chosen and applied.

A model's own pricing (set with ``PUT /v1/models/{provider}/{model_name}``) wins; without
one, the price is looked up in genai-prices, pydantic's maintained table of LLM prices (which
knows when each price changed), for the model at the time of the call. Without token counts
or any price, the cost is unknown (null), never a guessed 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import genai_prices

from prompt_ledger.db.tables import Model

PRICE_LIBRARY = f"genai-prices {genai_prices.__version__}"
"""The ``price_source`` of a cost priced from the library's table (names its version)."""
MODEL_PRICING = "model"
"""The ``price_source`` of a cost priced from the model's own pricing."""

_MILLION = Decimal(1_000_000)
_QUANTUM = Decimal("1e-12")  # the cost column's scale: the value answered is the one stored


@dataclass(frozen=True, slots=True)
class Cost:
    cost_usd: Decimal | None
    price_source: str | None


UNKNOWN = Cost(None, None)


def execution_cost(
    model: Model,
    *,
    prompt_tokens: int | None,
    response_tokens: int | None,
    cached_prompt_tokens: int | None = None,
    at: datetime | None,
) -> Cost:
    """The cost of one call to ``model`` that used these tokens, made at ``at``.

    ``prompt_tokens`` includes ``cached_prompt_tokens`` (as OpenAI counts them); cached
    tokens cost ``cached_input_per_mtok``, or the input price when the model has none.
    """
    if prompt_tokens is None and response_tokens is None:
        return UNKNOWN
    prompt, response = prompt_tokens or 0, response_tokens or 0
    cached = min(cached_prompt_tokens or 0, prompt)
    if model.input_per_mtok is not None and model.output_per_mtok is not None:
        cached_price = model.cached_input_per_mtok
        if cached_price is None:
            cached_price = model.input_per_mtok
        total = (
            (prompt - cached) * model.input_per_mtok
            + cached * cached_price
            + response * model.output_per_mtok
        ) / _MILLION
        return Cost(total.quantize(_QUANTUM), MODEL_PRICING)
    usage = genai_prices.Usage(
        input_tokens=prompt, output_tokens=response, cache_read_tokens=cached or None
    )
    try:
        price = genai_prices.calc_price(
            usage,
            model.model_name,
            provider_id=model.provider.value,
            genai_request_timestamp=at,
        )
    except LookupError:  # a model the table does not know (a local or fine-tuned one)
        return UNKNOWN
    return Cost(price.total_price.quantize(_QUANTUM), PRICE_LIBRARY)


def warm_up() -> None:
    """Load the price table now (~0.4 s, once per process) rather than in the first call
    that needs it, which would stall the event loop it runs on."""
    genai_prices.calc_price(genai_prices.Usage(input_tokens=1), "gpt-4o-mini", provider_id="openai")
