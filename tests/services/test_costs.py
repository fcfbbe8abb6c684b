"""services/costs.py: which price applies, and the arithmetic, against independent figures."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import genai_prices

from prompt_ledger.db.tables import Model, ProviderName
from prompt_ledger.services import costs


def model(name: str = "gpt-4o-mini", **prices: str) -> Model:
    return Model(
        provider=ProviderName.OPENAI,
        model_name=name,
        max_tokens=1000,
        **{k: Decimal(v) for k, v in prices.items()},
    )


class TestModelPricing:
    def test_wins_over_the_library(self) -> None:
        cost = costs.execution_cost(
            model(input_per_mtok="1", output_per_mtok="3"),
            prompt_tokens=1000,
            response_tokens=100,
            at=None,
        )
        assert cost == costs.Cost(Decimal("0.0013"), "model")

    def test_cached_tokens_without_a_cached_price_cost_the_input_price(self) -> None:
        m = model(input_per_mtok="2", output_per_mtok="4")
        with_cache = costs.execution_cost(
            m, prompt_tokens=10, response_tokens=0, cached_prompt_tokens=4, at=None
        )
        without = costs.execution_cost(m, prompt_tokens=10, response_tokens=0, at=None)
        assert with_cache == without == costs.Cost(Decimal("0.00002"), "model")

    def test_cached_count_beyond_the_prompt_is_capped(self) -> None:
        m = model(input_per_mtok="2", output_per_mtok="4", cached_input_per_mtok="1")
        cost = costs.execution_cost(
            m, prompt_tokens=10, response_tokens=0, cached_prompt_tokens=50, at=None
        )
        assert cost.cost_usd == Decimal("0.00001")

    def test_one_missing_count_is_zero_tokens(self) -> None:
        m = model(input_per_mtok="2", output_per_mtok="4")
        assert costs.execution_cost(m, prompt_tokens=None, response_tokens=5, at=None) == (
            costs.Cost(Decimal("0.00002"), "model")
        )


class TestLibrary:
    def test_a_dated_lookup_matches_genai_prices(self) -> None:
        at = datetime(2025, 6, 1, tzinfo=UTC)
        cost = costs.execution_cost(
            model("gpt-4o"),
            prompt_tokens=1200,
            response_tokens=300,
            cached_prompt_tokens=200,
            at=at,
        )
        expected = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=1200, output_tokens=300, cache_read_tokens=200),
            "gpt-4o",
            provider_id="openai",
            genai_request_timestamp=at,
        )
        assert cost == costs.Cost(expected.total_price, f"genai-prices {genai_prices.__version__}")

    def test_unknown_model_or_no_tokens_is_unknown(self) -> None:
        unknown = model("definitely-not-a-real-model-xyz")
        assert costs.execution_cost(unknown, prompt_tokens=5, response_tokens=5, at=None) == (
            costs.UNKNOWN
        )
        assert costs.execution_cost(model(), prompt_tokens=None, response_tokens=None, at=None) == (
            costs.UNKNOWN
        )
