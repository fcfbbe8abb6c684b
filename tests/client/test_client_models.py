"""The clients' model registry calls, cost fields and analytics group_by (both clients), and
the official openai SDK reading /v1/models over real HTTP."""

from __future__ import annotations

import uuid

import pytest
from openai import OpenAI
from tests.client.conftest import MODEL, LiveServer

from prompt_ledger.client import (
    AsyncPromptLedger,
    Pricing,
    PromptLedger,
    UnknownModelError,
    ValidationError,
)


def unique() -> str:
    return f"cm-{uuid.uuid4().hex[:10]}"


PROMPT = 'one two three [[stub reply="a b"]]'  # 3 prompt tokens, 2 response tokens


async def test_async_client_models_cost_and_group_by(aclient: AsyncPromptLedger) -> None:
    name = unique()
    added = await aclient.put_model(
        name, max_tokens=500, pricing={"input_per_mtok": 4, "output_per_mtok": 16}
    )
    assert added.created
    assert (added.id, added.max_tokens, added.is_active) == (name, 500, True)
    assert added.pricing == Pricing(input_per_mtok=4, output_per_mtok=16)
    listed = {m.id: m for m in await aclient.list_models()}
    assert listed[name] == added.model_copy(update={"created": False})
    assert listed[MODEL].pricing is None

    await aclient.save_prompt("costly", PROMPT)
    e = await aclient.run("costly", model_name=name)
    assert e.telemetry.price_source == "model"
    assert e.telemetry.cost_usd == pytest.approx((3 * 4 + 2 * 16) / 1e6)
    await aclient.run("costly", model_name=MODEL)

    report = await aclient.analytics(group_by="model")
    (row,) = report.prompts
    assert row.cost_usd == pytest.approx(sum(g.cost_usd for g in row.groups or []))
    assert [(g.model.name if g.model else None, g.executions) for g in row.groups or []] == [
        (name, 1),
        (MODEL, 1),
    ]
    assert (await aclient.analytics()).prompts[0].groups is None

    updated = await aclient.put_model(name, is_active=False, remove_pricing=True)
    assert (updated.created, updated.is_active, updated.pricing, updated.max_tokens) == (
        False,
        False,
        None,
        500,
    )
    with pytest.raises(UnknownModelError):
        await aclient.run("costly", model_name=name)
    with pytest.raises(ValidationError):
        await aclient.put_model(name, max_tokens=0)
    with pytest.raises(ValueError):
        await aclient.put_model(name, pricing={"input_per_mtok": 1}, remove_pricing=True)


def test_sync_client_models(sclient: PromptLedger) -> None:
    name = f"org/{unique()}"
    added = sclient.put_model(name, supports_streaming=False)
    assert (added.created, added.supports_streaming, added.max_tokens) == (True, False, 4096)
    again = sclient.put_model(name, pricing=Pricing(input_per_mtok=1, output_per_mtok=2))
    assert not again.created
    assert again.pricing is not None and again.pricing.output_per_mtok == 2
    assert name in {m.id for m in sclient.list_models()}
    sclient.save_prompt("p", PROMPT)
    e = sclient.run("p", model_name=name)
    assert e.telemetry.cost_usd == pytest.approx((3 * 1 + 2 * 2) / 1e6)
    by_version = sclient.analytics(group_by="version")
    assert [g.version for g in by_version.prompts[0].groups or []] == [1]
    with pytest.raises(ValidationError):
        sclient.put_model("a/../b")


def test_openai_sdk_lists_models_over_http(live_server: LiveServer) -> None:
    """The official SDK, pointed at PromptLedger with a PromptLedger key (sent as Bearer)."""
    with OpenAI(base_url=f"{live_server.url}/v1", api_key=live_server.api_key) as sdk:
        models = {m.id: m for m in sdk.models.list()}
    assert {"gpt-4o-mini", "gpt-4o", "gpt-4-turbo"} <= set(models)
    assert models["gpt-4o-mini"].owned_by == "openai"
    assert (models["gpt-4o-mini"].model_extra or {})["supports_streaming"] is True
