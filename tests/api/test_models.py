"""Model registry routes (SPEC §9.5, list shape §10.2), retired models, and execution cost,
on every backend, with the stub provider."""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import genai_prices
import httpx
import pytest
from fastapi import FastAPI
from openai import AsyncOpenAI
from tests.api.test_executions import RUN, SUBMIT, body, save, wait_done
from tests.api.test_prompts import make_tracking_prompt
from tests.conftest import API_KEY

from prompt_ledger.config import Settings

MODELS = "/v1/models"
LIBRARY = f"genai-prices {genai_prices.__version__}"


def unique(prefix: str = "m-") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def put_model(client: httpx.AsyncClient, name: str, **fields: Any) -> httpx.Response:
    return await client.put(f"{MODELS}/openai/{name}", json=fields)


async def listed(client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    r = await client.get(MODELS)
    assert r.status_code == 200, r.text
    return {m["id"]: m for m in r.json()["data"]}


class TestList:
    async def test_openai_list_shape_with_our_fields(self, client: httpx.AsyncClient) -> None:
        r = await client.get(MODELS)
        assert r.status_code == 200
        answer = r.json()
        assert answer["object"] == "list"
        seeded = {m["id"]: m for m in answer["data"]}
        assert seeded["gpt-4o-mini"] == {
            "id": "gpt-4o-mini",
            "object": "model",
            "owned_by": "openai",
            "provider": "openai",
            "max_tokens": 16384,
            "supports_streaming": True,
            "is_active": True,
            "pricing": None,
        }
        assert seeded["gpt-4-turbo"]["max_tokens"] == 4096

    async def test_the_openai_sdk_reads_it_with_a_bearer_key(
        self, app_and_client: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        app, _ = app_and_client
        transport = httpx.ASGITransport(app=app)
        async with (
            httpx.AsyncClient(transport=transport) as http,
            AsyncOpenAI(base_url="http://testserver/v1", api_key=API_KEY, http_client=http) as sdk,
        ):
            models = [m async for m in sdk.models.list()]
        by_id = {m.id: m for m in models}
        assert by_id["gpt-4o"].owned_by == "openai"
        assert by_id["gpt-4o"].object == "model"
        assert by_id["gpt-4o"].model_extra is not None
        assert by_id["gpt-4o"].model_extra["max_tokens"] == 16384

    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {API_KEY}"}],
        ids=["none", "wrong-bearer", "not-bearer"],
    )
    async def test_without_a_valid_key_is_401(
        self, app_and_client: tuple[FastAPI, httpx.AsyncClient], headers: dict[str, str]
    ) -> None:
        app, _ = app_and_client
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as anonymous:
            r = await anonymous.get(MODELS, headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"
            # and the bearer key works on every /v1 route (one auth dependency)
            ok = await anonymous.get("/v1/prompts", headers={"Authorization": f"Bearer {API_KEY}"})
            assert ok.status_code == 200


class TestPut:
    async def test_new_model_takes_defaults_for_unsent_fields(
        self, client: httpx.AsyncClient
    ) -> None:
        name = unique()
        r = await put_model(client, name, max_tokens=1000)
        assert r.status_code == 201, r.text
        assert r.json() == {
            "id": name,
            "object": "model",
            "owned_by": "openai",
            "provider": "openai",
            "max_tokens": 1000,
            "supports_streaming": True,
            "is_active": True,
            "pricing": None,
        }
        assert (await listed(client))[name] == r.json()

    async def test_update_changes_only_the_fields_sent(self, client: httpx.AsyncClient) -> None:
        name = unique()
        pricing = {"input_per_mtok": 0.15, "output_per_mtok": 0.6, "cached_input_per_mtok": 0.075}
        assert (await put_model(client, name, max_tokens=2000, pricing=pricing)).status_code == 201
        r = await put_model(client, name, supports_streaming=False)
        assert r.status_code == 200
        model = r.json()
        assert (model["max_tokens"], model["supports_streaming"]) == (2000, False)
        assert model["pricing"] == pricing
        r = await put_model(client, name, pricing={"input_per_mtok": 1, "output_per_mtok": 2})
        assert r.json()["pricing"] == {
            "input_per_mtok": 1.0,
            "output_per_mtok": 2.0,
            "cached_input_per_mtok": None,
        }
        r = await put_model(client, name, pricing=None)
        assert (r.json()["pricing"], r.json()["max_tokens"]) == (None, 2000)
        assert (await listed(client))[name] == r.json()

    async def test_names_with_slashes(self, client: httpx.AsyncClient) -> None:
        name = f"meta-llama/{unique()}"
        assert (await put_model(client, name)).status_code == 201
        assert name in await listed(client)

    @pytest.mark.parametrize(
        "fields",
        [
            {"max_tokens": 0},
            {"max_tokens": 2**31},
            {"max_tokens": None},
            {"max_tokens": "many"},
            {"is_active": "perhaps"},
            {"pricing": {"input_per_mtok": -1, "output_per_mtok": 1}},
            {"pricing": {"input_per_mtok": 1}},
            {"pricing": {"input_per_mtok": 1, "output_per_mtok": 0.0000001}},
            {"pricing": {"input_per_mtok": 1, "output_per_mtok": 2_000_000}},
            {"pricing": {"input_per_mtok": 1, "output_per_mtok": 1, "cached_input_per_mtok": -2}},
            {"pricing": {"input_per_mtok": 1, "output_per_mtok": 1, "extra": 1}},
            {"pricing": "cheap"},
            {"colour": "blue"},
        ],
    )
    async def test_bad_values_are_422_and_write_nothing(
        self, client: httpx.AsyncClient, fields: dict[str, Any]
    ) -> None:
        name = unique()
        r = await put_model(client, name, **fields)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"
        assert name not in await listed(client)
        # nor does it change an existing model
        assert (await put_model(client, name, max_tokens=10)).status_code == 201
        assert (await put_model(client, name, **fields)).status_code == 422
        assert (await listed(client))[name]["max_tokens"] == 10

    async def test_unknown_provider_is_422(self, client: httpx.AsyncClient) -> None:
        r = await client.put(f"{MODELS}/acme/{unique()}", json={})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"


class TestRetired:
    async def test_new_runs_are_unknown_model_and_old_executions_stay(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        name = unique()
        await put_model(client, name)
        await save(client, "p", "Hi")
        ran = (await client.post(RUN, json=body(model_name=name))).json()
        assert ran["status"] == "succeeded"
        assert (await put_model(client, name, is_active=False)).json()["is_active"] is False

        await make_tracking_prompt(settings, "tracked")
        attempts = [
            client.post(RUN, json=body(model_name=name)),
            client.post(SUBMIT, json=body(model_name=name)),
            client.post(
                "/v1/prompts/tracked/execute",
                json={"model_name": name, "variables": {"x": 1}, "mode": "async"},
            ),
        ]
        for attempt in attempts:
            r = await attempt
            assert r.status_code == 422, r.text
            assert r.json()["error"]["code"] == "unknown_model"
        old = await client.get(f"/v1/executions/{ran['id']}")
        assert old.status_code == 200
        assert old.json()["model"] == {"provider": "openai", "name": name}
        items = (await client.get("/v1/executions")).json()["items"]
        assert [e["id"] for e in items] == [ran["id"]]  # the refused runs wrote no row

        assert (await put_model(client, name, is_active=True)).status_code == 200
        assert (await client.post(RUN, json=body(model_name=name))).status_code == 200


# The stub counts words: prompt_tokens = words of the prompt (directives left out),
# completion_tokens = words of the reply.
PROMPT = 'one two three four five [[stub reply="a b c"]]'
PROMPT_TOKENS, RESPONSE_TOKENS = 5, 3


def expected_cost(
    input_price: str, output_price: str, *, cached: int = 0, cached_price: str | None = None
) -> Decimal:
    """Independently of services/costs.py: USD for PROMPT at these prices per Mtok."""
    cached_rate = Decimal(cached_price or input_price)
    return (
        Decimal(PROMPT_TOKENS - cached) * Decimal(input_price)
        + Decimal(cached) * cached_rate
        + Decimal(RESPONSE_TOKENS) * Decimal(output_price)
    ) / Decimal(10**6)


def cost_of(execution: dict[str, Any]) -> tuple[Decimal | None, str | None]:
    t = execution["telemetry"]
    cost = None if t["cost_usd"] is None else Decimal(repr(t["cost_usd"]))
    return cost, t["price_source"]


class TestCost:
    async def test_priced_model_uses_its_own_pricing(self, client: httpx.AsyncClient) -> None:
        name = unique()
        await put_model(client, name, pricing={"input_per_mtok": 2.5, "output_per_mtok": 10})
        await save(client, "p", PROMPT)
        e = (await client.post(RUN, json=body(model_name=name))).json()
        assert (e["telemetry"]["prompt_tokens"], e["telemetry"]["response_tokens"]) == (5, 3)
        assert cost_of(e) == (expected_cost("2.5", "10"), "model")
        again = (await client.get(f"/v1/executions/{e['id']}")).json()
        assert cost_of(again) == cost_of(e)

    async def test_cached_prompt_tokens_take_the_cached_price(
        self, client: httpx.AsyncClient
    ) -> None:
        name = unique()
        pricing = {"input_per_mtok": 3, "output_per_mtok": 15, "cached_input_per_mtok": 0.3}
        await put_model(client, name, pricing=pricing)
        await save(client, "p", PROMPT + " [[stub cached=2]]")
        e = (await client.post(RUN, json=body(model_name=name))).json()
        assert cost_of(e) == (expected_cost("3", "15", cached=2, cached_price="0.3"), "model")

    async def test_unpriced_known_model_is_priced_by_genai_prices_at_its_time(
        self, client: httpx.AsyncClient
    ) -> None:
        await save(client, "p", PROMPT)
        e = (await client.post(RUN, json=body(model_name="gpt-4o-mini"))).json()
        library = genai_prices.calc_price(
            genai_prices.Usage(input_tokens=PROMPT_TOKENS, output_tokens=RESPONSE_TOKENS),
            "gpt-4o-mini",
            provider_id="openai",
            genai_request_timestamp=datetime.fromisoformat(e["started_at"]),
        )
        assert library.total_price > 0
        assert cost_of(e) == (library.total_price, LIBRARY)

    async def test_async_executions_are_priced_too(self, client: httpx.AsyncClient) -> None:
        name = unique()
        await put_model(client, name, pricing={"input_per_mtok": 1, "output_per_mtok": 4})
        await save(client, "p", PROMPT)
        queued = (await client.post(SUBMIT, json=body(model_name=name))).json()
        e = await wait_done(client, queued["execution_id"])
        assert cost_of(e) == (expected_cost("1", "4"), "model")

    @pytest.mark.parametrize(
        ("text", "priced"),
        [
            ("no usage [[stub usage=none]]", True),  # no token counts
            ("fails [[stub status=400]]", True),  # a failed call is not billed
            (PROMPT, False),  # a model neither we nor the library price
        ],
        ids=["no-usage", "failed", "unknown-price"],
    )
    async def test_unknown_cost_is_null(
        self, client: httpx.AsyncClient, text: str, priced: bool
    ) -> None:
        name = unique("local-")
        pricing = {"input_per_mtok": 1, "output_per_mtok": 1} if priced else None
        await put_model(client, name, pricing=pricing)
        await save(client, "p", text)
        e = (await client.post(RUN, json=body(model_name=name))).json()
        assert cost_of(e) == (None, None)
        assert cost_of((await client.get(f"/v1/executions/{e['id']}")).json()) == (None, None)
