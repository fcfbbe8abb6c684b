"""The original task list's end-to-end workflows (§4.6 and §11.2), step by step."""

from __future__ import annotations

from typing import Any

import httpx
from tests.api.test_executions import RUN, save, wait_done
from tests.api.test_tracking import changes, item, register

from prompt_ledger.testing.stub_provider import stub_stats

MODEL = {"model_name": "gpt-4o-mini"}


async def execute(client: httpx.AsyncClient, name: str, mode: str, **extra: Any) -> dict[str, Any]:
    r = await client.post(f"/v1/prompts/{name}/execute", json={**MODEL, "mode": mode, **extra})
    assert r.status_code == (200 if mode == "sync" else 202), r.text
    if mode == "async":
        return await wait_done(client, r.json()["execution_id"])
    result: dict[str, Any] = r.json()
    return result


async def test_code_based_workflow(client: httpx.AsyncClient, stub_url: str) -> None:
    # 1. register multiple code prompts
    first = await register(
        client,
        item("Support.GREETING", "Hello {{ customer }}, how can we help?"),
        item("Support.CLOSING", "Thanks {{ customer }}!"),
        item("Support.ESCALATE", "Escalating ticket {{ ticket }}"),
    )
    assert [c[2] for c in changes(first)] == ["created"] * 3
    # 2. execute each, sync and async; all in the one executions table
    for name, variables in (
        ("Support.GREETING", {"customer": "Ada"}),
        ("Support.CLOSING", {"customer": "Ada"}),
        ("Support.ESCALATE", {"ticket": 7}),
    ):
        for mode in ("sync", "async"):
            e = await execute(client, name, mode, variables=variables)
            assert e["status"] == "succeeded"
            assert e["prompt"] == {"name": name, "mode": "tracking"}
            assert e["execution_mode"] == mode
    # 3. change one prompt's text and re-register: a new version
    second = await register(
        client,
        item("Support.GREETING", "Hi {{ customer }}! What can we do for you?"),
        item("Support.CLOSING", "Thanks {{ customer }}!"),
        item("Support.ESCALATE", "Escalating ticket {{ ticket }}"),
    )
    assert changes(second) == [
        ("Support.GREETING", 2, "new_version", 1),
        ("Support.CLOSING", 1, "unchanged", 1),
        ("Support.ESCALATE", 1, "unchanged", 1),
    ]
    # 4. re-register unchanged: no version anywhere
    third = await register(
        client,
        item("Support.GREETING", "Hi {{ customer }}! What can we do for you?"),
        item("Support.CLOSING", "Thanks {{ customer }}!"),
    )
    assert [c[2] for c in changes(third)] == ["unchanged", "unchanged"]
    e = await execute(client, "Support.GREETING", "sync", variables={"customer": "Bo"})
    assert e["version"]["number"] == 2
    # 5. analytics for tracking mode
    report = (await client.get("/v1/analytics/prompts", params={"mode": "tracking"})).json()
    assert report["total_executions"] == 7
    assert report["by_mode"]["tracking"]["executions"] == 7
    assert report["by_mode"]["tracking"]["succeeded"] == 7
    assert {p["name"]: p["executions"] for p in report["prompts"]} == {
        "Support.GREETING": 3,
        "Support.CLOSING": 2,
        "Support.ESCALATE": 2,
    }
    # 6. history for tracking mode, with per-version execution counts
    history = (
        await client.get("/v1/prompts/Support.GREETING/history", params={"mode": "tracking"})
    ).json()
    assert [(v["version_number"], v["execution_count"]) for v in history["versions"]] == [
        (2, 1),
        (1, 2),
    ]
    assert stub_stats(stub_url)["calls"] == 7


async def test_mixed_modes_and_isolation(client: httpx.AsyncClient) -> None:
    await save(client, "marketing.tagline", "Buy {{ product }} now")
    await register(client, item("App.SUMMARY", "Summarise: {{ text }}"))
    for product in ("tea", "coffee"):
        r = await client.post(
            RUN,
            json={"prompt_name": "marketing.tagline", "variables": {"product": product}, **MODEL},
        )
        assert r.json()["status"] == "succeeded"
    await execute(client, "App.SUMMARY", "sync", variables={"text": "long"})
    # isolation, both directions, with messages naming the right route
    wrong = await client.post(
        "/v1/prompts/marketing.tagline/execute", json={**MODEL, "mode": "sync"}
    )
    assert wrong.status_code == 409
    assert "executions:run" in wrong.json()["error"]["message"]
    wrong = await client.put("/v1/prompts/App.SUMMARY", json={"template_source": "x"})
    assert wrong.status_code == 409
    assert "register-code" in wrong.json()["error"]["message"]
    # unified analytics, both modes and each alone
    everything = (await client.get("/v1/analytics/prompts")).json()
    assert everything["total_executions"] == 3
    assert everything["prompts_by_mode"] == {"full": 1, "tracking": 1}
    assert everything["by_mode"]["full"]["executions"] == 2
    assert everything["by_mode"]["tracking"]["executions"] == 1
    full = (await client.get("/v1/analytics/prompts", params={"mode": "full"})).json()
    assert [p["name"] for p in full["prompts"]] == ["marketing.tagline"]
    assert full["total_executions"] == 2
    # history works for both modes
    for name, mode in (("marketing.tagline", "full"), ("App.SUMMARY", "tracking")):
        h = (await client.get(f"/v1/prompts/{name}/history", params={"mode": mode})).json()
        assert h["mode"] == mode
        assert sum(v["execution_count"] for v in h["versions"]) == (2 if mode == "full" else 1)
