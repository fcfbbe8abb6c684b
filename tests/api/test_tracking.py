"""Tracking mode: register-code, execute, history, conversion, mode isolation."""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from tests.api.test_executions import RUN, SUBMIT, save, wait_done

from prompt_ledger.testing.stub_provider import stub_stats

REGISTER = "/v1/prompts/register-code"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def register(client: httpx.AsyncClient, *items: dict[str, Any]) -> httpx.Response:
    return await client.post(REGISTER, json={"prompts": list(items)})


def item(name: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "template_source": text, **extra}


def changes(r: httpx.Response) -> list[tuple[str, int, str, int | None]]:
    return [
        (x["name"], x["version_number"], x["change"], x["previous_version_number"])
        for x in r.json()["results"]
    ]


class TestRegister:
    async def test_change_detection_cycle(self, client: httpx.AsyncClient) -> None:
        r = await register(client, item("P.A", "a1 {{ x }}"), item("P.B", "b1"))
        assert r.status_code == 200
        assert changes(r) == [("P.A", 1, "created", None), ("P.B", 1, "created", None)]
        assert r.json()["results"][0]["checksum"] == sha("a1 {{ x }}")
        r = await register(client, item("P.A", "a1 {{ x }}"), item("P.B", "b1"))
        assert changes(r) == [("P.A", 1, "unchanged", 1), ("P.B", 1, "unchanged", 1)]
        r = await register(client, item("P.A", "a2 {{ x }}"), item("P.B", "b1"))
        assert changes(r) == [("P.A", 2, "new_version", 1), ("P.B", 1, "unchanged", 1)]
        r = await register(client, item("P.A", "a1 {{ x }}"))
        assert changes(r) == [("P.A", 1, "reactivated", 2)]
        prompt = (await client.get("/v1/prompts/P.A")).json()
        assert prompt["mode"] == "tracking"
        assert prompt["active_version"]["version_number"] == 1
        versions = (await client.get("/v1/prompts/P.A/versions")).json()["items"]
        assert [(v["version_number"], v["status"]) for v in versions] == [
            (2, "deprecated"),
            (1, "active"),
        ]

    @pytest.mark.parametrize("variant", ["a ", "A", "a\n"])
    async def test_whitespace_and_case_are_changes(
        self, client: httpx.AsyncClient, variant: str
    ) -> None:
        await register(client, item("P", "a"))
        assert changes(await register(client, item("P", variant)))[0][2] == "new_version"

    async def test_template_hash_is_verified(self, client: httpx.AsyncClient) -> None:
        ok = await register(client, item("P", "text", template_hash=sha("text")))
        assert ok.status_code == 200
        upper = await register(client, item("Q", "text", template_hash=sha("text").upper()))
        assert upper.status_code == 200
        bad = await register(client, item("R", "text", template_hash=sha("other")))
        assert bad.status_code == 422
        assert bad.json()["error"]["code"] == "validation_error"
        assert (await client.get("/v1/prompts/R")).status_code == 404

    async def test_full_mode_name_rejects_whole_batch(self, client: httpx.AsyncClient) -> None:
        await save(client, "owned", "full text")
        r = await register(client, item("A.new", "x"), item("owned", "y"), item("Z.new", "z"))
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "mode_mismatch"
        assert "PUT /v1/prompts/owned" in r.json()["error"]["message"]
        for name in ("A.new", "Z.new"):
            assert (await client.get(f"/v1/prompts/{name}")).status_code == 404
        assert len((await client.get("/v1/prompts/owned/versions")).json()["items"]) == 1

    async def test_invalid_template_rejects_whole_batch(self, client: httpx.AsyncClient) -> None:
        r = await register(client, item("A", "fine"), item("B", "{% if %}"))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_template"
        assert (await client.get("/v1/prompts/A")).status_code == 404

    @pytest.mark.parametrize(
        "payload",
        [
            {"prompts": []},
            {"prompts": [item("A", "x"), item("A", "y")]},
            {"prompts": [item("bad name", "x")]},
            {"prompts": [item("A", "")]},
            {"prompts": [item("A", "x", template_hash="abc")]},
            {"prompts": [item(f"P{i}", "x") for i in range(501)]},
            {},
        ],
    )
    async def test_bad_batches_are_422(self, client: httpx.AsyncClient, payload: Any) -> None:
        r = await client.post(REGISTER, json=payload)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"
        assert (await client.get("/v1/prompts")).json()["items"] == []

    async def test_batch_of_500(self, client: httpx.AsyncClient) -> None:
        r = await register(client, *(item(f"Big.P{i:03d}", f"text {i}") for i in range(500)))
        assert r.status_code == 200
        assert {x["change"] for x in r.json()["results"]} == {"created"}
        assert [x["name"] for x in r.json()["results"]] == [f"Big.P{i:03d}" for i in range(500)]


class TestExecute:
    async def test_sync_and_async(self, client: httpx.AsyncClient, stub_url: str) -> None:
        await register(client, item("P.Greet", "Hi {{ who }}"))
        payload = {"variables": {"who": "Ada"}, "model_name": "gpt-4o-mini", "mode": "sync"}
        r = await client.post("/v1/prompts/P.Greet/execute", json=payload)
        assert r.status_code == 200
        e = r.json()
        assert e["status"] == "succeeded"
        assert e["prompt"] == {"name": "P.Greet", "mode": "tracking"}
        assert e["response_text"] == "echo: Hi Ada"
        r = await client.post("/v1/prompts/P.Greet/execute", json=payload | {"mode": "async"})
        assert r.status_code == 202
        done = await wait_done(client, r.json()["execution_id"])
        assert done["execution_mode"] == "async"
        assert done["status"] == "succeeded"
        listed = (await client.get("/v1/executions", params={"prompt_mode": "tracking"})).json()
        assert len(listed["items"]) == 2

    async def test_version_pinning(self, client: httpx.AsyncClient) -> None:
        await register(client, item("P", "one"))
        await register(client, item("P", "two"))
        base = {"model_name": "gpt-4o-mini", "mode": "sync"}
        assert (await client.post("/v1/prompts/P/execute", json=base)).json()[
            "rendered_prompt"
        ] == "two"
        pinned = await client.post("/v1/prompts/P/execute", json=base | {"version": 1})
        assert pinned.json()["rendered_prompt"] == "one"
        missing = await client.post("/v1/prompts/P/execute", json=base | {"version": 3})
        assert missing.status_code == 404

    async def test_idempotency_on_execute(self, client: httpx.AsyncClient, stub_url: str) -> None:
        await register(client, item("P", "hi"))
        body = {"model_name": "gpt-4o-mini", "mode": "async"}
        first = await client.post(
            "/v1/prompts/P/execute", json=body, headers={"Idempotency-Key": "k1"}
        )
        again = await client.post(
            "/v1/prompts/P/execute", json=body, headers={"Idempotency-Key": "k1"}
        )
        assert again.status_code == 202
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["execution_id"] == first.json()["execution_id"]
        other = await client.post(
            "/v1/prompts/P/execute", json=body | {"mode": "sync"}, headers={"Idempotency-Key": "k1"}
        )
        assert other.status_code == 422
        assert other.json()["error"]["code"] == "idempotency_key_reused"
        await wait_done(client, first.json()["execution_id"])
        assert stub_stats(stub_url)["calls"] == 1

    async def test_errors(self, client: httpx.AsyncClient) -> None:
        await register(client, item("P", "Hi {{ who }}"))
        base = {"model_name": "gpt-4o-mini", "mode": "sync"}
        r = await client.post("/v1/prompts/P/execute", json=base)
        assert r.json()["error"]["code"] == "render_error"
        r = await client.post("/v1/prompts/missing/execute", json=base)
        assert r.status_code == 404
        r = await client.post("/v1/prompts/P/execute", json=base | {"mode": "later"})
        assert r.status_code == 422
        r = await client.post("/v1/prompts/P/execute", json=base | {"model_name": "nope"})
        assert r.json()["error"]["code"] == "unknown_model"


class TestModeIsolation:
    async def test_full_prompt_cannot_use_tracking_route(self, client: httpx.AsyncClient) -> None:
        await save(client, "full.p", "hi")
        r = await client.post(
            "/v1/prompts/full.p/execute", json={"model_name": "gpt-4o-mini", "mode": "sync"}
        )
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "mode_mismatch"
        assert "/v1/executions:run" in r.json()["error"]["message"]

    async def test_tracking_prompt_refuses_full_routes(self, client: httpx.AsyncClient) -> None:
        await register(client, item("T.p", "hi"))
        run_body = {"prompt_name": "T.p", "model_name": "gpt-4o-mini"}
        for route in (RUN, SUBMIT):
            r = await client.post(route, json=run_body)
            assert r.status_code == 409
            assert "/v1/prompts/T.p/execute" in r.json()["error"]["message"]
        r = await client.put("/v1/prompts/T.p", json={"template_source": "x"})
        assert r.status_code == 409
        assert "register-code" in r.json()["error"]["message"]
        r = await client.post("/v1/prompts/T.p/versions/1:activate")
        assert r.status_code == 409


class TestHistory:
    @pytest.mark.parametrize("mode", ["full", "tracking"])
    async def test_counts_per_version_in_both_modes(
        self, client: httpx.AsyncClient, mode: str
    ) -> None:
        async def new_text(text: str) -> None:
            if mode == "full":
                await save(client, "H.p", text)
            else:
                await register(client, item("H.p", text))

        async def run_once() -> None:
            if mode == "full":
                r = await client.post(RUN, json={"prompt_name": "H.p", "model_name": "gpt-4o-mini"})
            else:
                r = await client.post(
                    "/v1/prompts/H.p/execute", json={"model_name": "gpt-4o-mini", "mode": "sync"}
                )
            assert r.status_code == 200

        await new_text("one")
        await run_once()
        await run_once()
        await new_text("two")
        await run_once()
        await new_text("three")
        r = await client.get("/v1/prompts/H.p/history", params={"mode": mode})
        assert r.status_code == 200
        h = r.json()
        assert h["name"] == "H.p"
        assert h["mode"] == mode
        counts = [(v["version_number"], v["execution_count"]) for v in h["versions"]]
        assert counts == [(3, 0), (2, 1), (1, 2)]
        assert h["versions"][0]["last_executed_at"] is None
        assert h["versions"][2]["last_executed_at"] < h["versions"][1]["last_executed_at"]
        for v in h["versions"]:
            assert v["template_hash"] == v["checksum"]
        assert h["versions"][0]["status"] == "active"
        other = "tracking" if mode == "full" else "full"
        r = await client.get("/v1/prompts/H.p/history", params={"mode": other})
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "mode_mismatch"
        assert (await client.get("/v1/prompts/H.p/history")).status_code == 200
        assert (await client.get("/v1/prompts/none/history")).status_code == 404


class TestConvert:
    async def test_round_trip_keeps_versions_and_executions(
        self, client: httpx.AsyncClient
    ) -> None:
        await register(client, item("C.p", "code text"))
        await client.post(
            "/v1/prompts/C.p/execute", json={"model_name": "gpt-4o-mini", "mode": "sync"}
        )
        r = await client.post("/v1/prompts/C.p:convert", json={"to": "full"})
        assert r.status_code == 200
        assert r.json()["mode"] == "full"
        assert r.json()["active_version"]["version_number"] == 1
        assert (
            await client.put("/v1/prompts/C.p", json={"template_source": "api text"})
        ).status_code == 201
        r = await client.post(RUN, json={"prompt_name": "C.p", "model_name": "gpt-4o-mini"})
        assert r.json()["prompt"]["mode"] == "full"
        h = (await client.get("/v1/prompts/C.p/history")).json()
        assert [(v["version_number"], v["execution_count"]) for v in h["versions"]] == [
            (2, 1),
            (1, 1),
        ]
        r = await client.post("/v1/prompts/C.p:convert", json={"to": "tracking"})
        assert r.json()["mode"] == "tracking"
        r = await register(client, item("C.p", "code text"))
        assert changes(r) == [("C.p", 1, "reactivated", 2)]
        events = (await client.get("/v1/prompts/C.p/events")).json()["items"]
        converted = [e for e in events if e["type"] == "mode_converted"]
        assert len(converted) == 2
        assert all(e["version_number"] is None for e in converted)

    async def test_converting_to_the_same_mode_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        await save(client, "p", "x")
        r = await client.post("/v1/prompts/p:convert", json={"to": "full"})
        assert r.status_code == 200
        events = (await client.get("/v1/prompts/p/events")).json()["items"]
        assert "mode_converted" not in [e["type"] for e in events]

    async def test_errors(self, client: httpx.AsyncClient) -> None:
        assert (
            await client.post("/v1/prompts/nope:convert", json={"to": "full"})
        ).status_code == 404
        await save(client, "p", "x")
        r = await client.post("/v1/prompts/p:convert", json={"to": "other"})
        assert r.status_code == 422
