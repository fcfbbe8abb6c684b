"""GET /v1/analytics/prompts end to end: a mixed full + tracking ledger, number by number."""

from __future__ import annotations

import math
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from tests.api.test_executions import RUN, SUBMIT, body, save, wait_done
from tests.api.test_tracking import item, register

GROUP_KEYS = ("version", "model", "label")
EMPTY = {
    "executions": 0,
    "succeeded": 0,
    "failed": 0,
    "avg_latency_ms": None,
    "p95_latency_ms": None,
    "prompt_tokens": 0,
    "response_tokens": 0,
    "cost_usd": 0.0,
}


def block(executions: list[dict[str, Any]]) -> dict[str, Any]:
    """What the analytics must say about these executions, computed from the ledger."""
    latencies = sorted(
        e["telemetry"]["latency_ms"] for e in executions if e["telemetry"]["latency_ms"] is not None
    )
    return {
        "executions": len(executions),
        "succeeded": sum(e["status"] == "succeeded" for e in executions),
        "failed": sum(e["status"] == "failed" for e in executions),
        "avg_latency_ms": sum(latencies) / len(latencies) if latencies else None,
        "p95_latency_ms": latencies[math.ceil(0.95 * len(latencies)) - 1] if latencies else None,
        "prompt_tokens": sum(e["telemetry"]["prompt_tokens"] or 0 for e in executions),
        "response_tokens": sum(e["telemetry"]["response_tokens"] or 0 for e in executions),
        "cost_usd": float(sum(Decimal(repr(e["telemetry"]["cost_usd"] or 0)) for e in executions)),
    }


async def test_empty_ledger_gives_zeros_and_nulls(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/analytics/prompts")
    assert r.status_code == 200
    assert r.json() == {
        "mode": "all",
        "total_executions": 0,
        "prompts_by_mode": {"full": 0, "tracking": 0},
        "by_mode": {"full": EMPTY, "tracking": EMPTY},
        "prompts": [],
    }


async def test_mixed_modes_number_by_number(client: httpx.AsyncClient) -> None:
    await save(client, "full.a", "Hello {{ who }}")
    await save(client, "full.b", "[[stub status=400]] nope")
    await save(client, "full.idle", "never run")
    await register(client, item("Code.X", "code {{ who }}"), item("Code.Y", "code y"))
    for who in ("a", "b", "c"):
        await client.post(RUN, json=body("full.a", variables={"who": who}))
    await client.post(RUN, json=body("full.b"))
    queued = (await client.post(SUBMIT, json=body("full.a", variables={"who": "q"}))).json()
    await wait_done(client, queued["execution_id"])
    for who in ("x", "y"):
        await client.post(
            "/v1/prompts/Code.X/execute",
            json={"variables": {"who": who}, "model_name": "gpt-4o-mini", "mode": "sync"},
        )
    r = await client.post(
        "/v1/prompts/Code.Y/execute", json={"model_name": "gpt-4o-mini", "mode": "async"}
    )
    await wait_done(client, r.json()["execution_id"])

    ledger = (await client.get("/v1/executions", params={"limit": 500})).json()["items"]
    by_name: dict[str, list[dict[str, Any]]] = {}
    for e in ledger:
        by_name.setdefault(e["prompt"]["name"], []).append(e)

    report = (await client.get("/v1/analytics/prompts", params={"mode": "all"})).json()
    assert report["mode"] == "all"
    assert report["total_executions"] == 8
    assert report["prompts_by_mode"] == {"full": 3, "tracking": 2}
    assert [p["name"] for p in report["prompts"]] == ["full.a", "Code.X", "Code.Y", "full.b"]
    for p in report["prompts"]:
        expected = block(by_name[p["name"]])
        got = {k: v for k, v in p.items() if k not in ("name", "mode", "groups")}
        assert p["groups"] is None
        assert got == pytest.approx(expected), p["name"]
    full = by_name["full.a"] + by_name["full.b"]
    tracking = by_name["Code.X"] + by_name["Code.Y"]
    assert report["by_mode"]["full"] == pytest.approx(block(full))
    assert report["by_mode"]["tracking"] == pytest.approx(block(tracking))
    assert report["by_mode"]["full"]["failed"] == 1

    only_tracking = (await client.get("/v1/analytics/prompts", params={"mode": "tracking"})).json()
    assert only_tracking["mode"] == "tracking"
    assert only_tracking["total_executions"] == 3
    assert {p["mode"] for p in only_tracking["prompts"]} == {"tracking"}
    assert only_tracking["by_mode"]["full"] == EMPTY
    assert only_tracking["prompts_by_mode"] == {"full": 3, "tracking": 2}

    newest = ledger[0]["created_at"]
    window = (await client.get("/v1/analytics/prompts", params={"since": newest})).json()
    assert window["total_executions"] == 1
    before = (await client.get("/v1/analytics/prompts", params={"until": newest})).json()
    assert before["total_executions"] == 7
    past = (
        await client.get(
            "/v1/analytics/prompts",
            params={"since": "2020-01-01T00:00:00Z", "until": "2020-01-02T00:00:00Z"},
        )
    ).json()
    assert past["total_executions"] == 0
    assert past["by_mode"] == {"full": EMPTY, "tracking": EMPTY}


@pytest.mark.parametrize("params", [{"mode": "both"}, {"since": "soon"}, {"until": "x"}])
async def test_bad_query_is_422(client: httpx.AsyncClient, params: dict[str, str]) -> None:
    r = await client.get("/v1/analytics/prompts", params=params)
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"


async def test_cost_sums_and_group_by_version_and_model(client: httpx.AsyncClient) -> None:
    """Costs add up per prompt, per mode and per group; groups add up to their prompt."""
    priced = f"priced-{uuid.uuid4().hex[:8]}"
    r = await client.put(
        f"/v1/models/openai/{priced}", json={"pricing": {"input_per_mtok": 2, "output_per_mtok": 8}}
    )
    assert r.status_code == 201
    await save(client, "g", 'one two [[stub reply="a b c"]]')
    await client.post(RUN, json=body("g", model_name=priced))
    await client.post(RUN, json=body("g", model_name="gpt-4o-mini"))
    await save(client, "g", 'one two three [[stub reply="a"]]')  # version 2
    await client.post(RUN, json=body("g", model_name=priced))
    await client.post(RUN, json=body("g", model_name=priced))
    await client.post(RUN, json=body("g", version=1, model_name="gpt-4o-mini", variables={}))
    queued = (await client.post(SUBMIT, json=body("g", model_name=priced))).json()
    await wait_done(client, queued["execution_id"])
    ledger = (await client.get("/v1/executions", params={"prompt_name": "g"})).json()["items"]
    assert len(ledger) == 6
    assert all(e["telemetry"]["cost_usd"] for e in ledger)

    plain = (await client.get("/v1/analytics/prompts")).json()
    assert plain["prompts"][0]["cost_usd"] == pytest.approx(block(ledger)["cost_usd"])
    assert plain["by_mode"]["full"]["cost_usd"] == pytest.approx(block(ledger)["cost_usd"])

    by_version = (await client.get("/v1/analytics/prompts", params={"group_by": "version"})).json()
    row = by_version["prompts"][0]
    assert {k: v for k, v in row.items() if k != "groups"} == {
        k: v for k, v in plain["prompts"][0].items() if k != "groups"
    }
    assert [g["version"] for g in row["groups"]] == [2, 1]  # most executions first
    for group in row["groups"]:
        runs = [e for e in ledger if e["version"]["number"] == group["version"]]
        assert group["model"] is None
        got = {k: v for k, v in group.items() if k not in GROUP_KEYS}
        assert got == pytest.approx(block(runs))

    by_model = (await client.get("/v1/analytics/prompts", params={"group_by": "model"})).json()
    groups = by_model["prompts"][0]["groups"]
    assert [g["model"] for g in groups] == [
        {"provider": "openai", "name": priced},
        {"provider": "openai", "name": "gpt-4o-mini"},
    ]
    for group in groups:
        runs = [e for e in ledger if e["model"]["name"] == group["model"]["name"]]
        assert group["version"] is None
        got = {k: v for k, v in group.items() if k not in GROUP_KEYS}
        assert got == pytest.approx(block(runs))

    newest = ledger[0]["created_at"]
    window = (
        await client.get("/v1/analytics/prompts", params={"group_by": "model", "since": newest})
    ).json()
    assert [g["executions"] for g in window["prompts"][0]["groups"]] == [1]


async def test_group_by_label(client: httpx.AsyncClient) -> None:
    """Runs by label are grouped by the label named (a split's variants under one label);
    runs that named none form the group with ``label`` null, listed last among equals."""
    await save(client, "l", "one [[stub reply=x]]")
    await save(client, "l", "two [[stub reply=y]]")
    split = [{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
    assert (await client.put("/v1/prompts/l/labels/ab", json={"split": split})).status_code == 201
    assert (await client.put("/v1/prompts/l/labels/prod", json={"version": 1})).status_code == 201
    for subject in ("u1", "u2", "u3"):
        r = await client.post(RUN, json=body("l", label="ab", subject=subject, variables={}))
        assert r.status_code == 200, r.text
    await client.post(RUN, json=body("l", label="prod", variables={}))
    await client.post(RUN, json=body("l", variables={}))
    ledger = (await client.get("/v1/executions", params={"prompt_name": "l"})).json()["items"]
    assert len(ledger) == 5

    report = (await client.get("/v1/analytics/prompts", params={"group_by": "label"})).json()
    groups = report["prompts"][0]["groups"]
    assert [(g["label"], g["executions"]) for g in groups] == [("ab", 3), ("prod", 1), (None, 1)]
    for group in groups:
        runs = [e for e in ledger if e["label"] == group["label"]]
        assert group["version"] is None and group["model"] is None
        got = {k: v for k, v in group.items() if k not in GROUP_KEYS}
        assert got == pytest.approx(block(runs))


async def test_bad_group_by_is_422(client: httpx.AsyncClient) -> None:
    r = await client.get("/v1/analytics/prompts", params={"group_by": "colour"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "validation_error"
