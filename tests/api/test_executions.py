"""Execution routes on SQLite and PostgreSQL, with the in-process worker and the stub provider."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests.api.test_prompts import make_tracking_prompt

from prompt_ledger.config import Settings
from prompt_ledger.testing.stub_provider import stub_stats

RUN = "/v1/executions:run"
SUBMIT = "/v1/executions:submit"


async def save(client: httpx.AsyncClient, name: str, text: str, **extra: Any) -> None:
    r = await client.put(f"/v1/prompts/{name}", json={"template_source": text, **extra})
    assert r.status_code in (200, 201), r.text


def body(name: str = "p", **extra: Any) -> dict[str, Any]:
    return {"prompt_name": name, "model_name": "gpt-4o-mini", "variables": {}, **extra}


async def wait_done(
    client: httpx.AsyncClient, execution_id: str, timeout_s: float = 10
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        execution: dict[str, Any] = (await client.get(f"/v1/executions/{execution_id}")).json()
        if execution["status"] in ("succeeded", "failed", "canceled"):
            return execution
        await asyncio.sleep(0.02)
    raise AssertionError(f"execution {execution_id} did not finish: {execution}")


async def execution_count(client: httpx.AsyncClient) -> int:
    return len((await client.get("/v1/executions", params={"limit": 500})).json()["items"])


class TestRunSync:
    async def test_success_records_everything(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save(client, "welcome", "Hello {{ name }}!")
        r = await client.post(
            RUN, json=body("welcome", variables={"name": "Ada"}, metadata={"team": "x"})
        )
        assert r.status_code == 200, r.text
        e = r.json()
        assert set(e) == {
            "id",
            "status",
            "execution_mode",
            "prompt",
            "version",
            "label",
            "subject",
            "model",
            "variables",
            "rendered_prompt",
            "rendered_messages",  # SPEC §9.1: null for a text version
            "params",
            "response_text",
            "telemetry",
            "params_dropped",
            "error",
            "attempts",
            "idempotency_key",
            "metadata",
            "created_at",
            "started_at",
            "completed_at",
        }
        assert e["status"] == "succeeded"
        assert e["execution_mode"] == "sync"
        assert e["prompt"] == {"name": "welcome", "mode": "full"}
        assert e["version"]["number"] == 1
        assert e["label"] is None and e["subject"] is None
        assert len(e["version"]["checksum"]) == 64
        assert e["model"] == {"provider": "openai", "name": "gpt-4o-mini"}
        assert e["variables"] == {"name": "Ada"}
        assert e["rendered_prompt"] == "Hello Ada!"
        assert e["rendered_messages"] is None
        assert e["response_text"] == "echo: Hello Ada!"
        assert e["telemetry"]["prompt_tokens"] == 2
        assert e["telemetry"]["response_tokens"] == 3
        assert e["telemetry"]["latency_ms"] >= 0
        assert e["telemetry"]["provider_request_id"].startswith("chatcmpl-")
        assert e["error"] is None
        assert e["attempts"] == 1
        assert e["metadata"] == {"team": "x"}
        assert e["created_at"] <= e["started_at"] <= e["completed_at"]
        assert stub_stats(stub_url)["calls"] == 1
        stored = (await client.get(f"/v1/executions/{e['id']}")).json()
        assert stored == e

    async def test_params_are_mapped_and_unsupported_ones_dropped(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save(client, "p", "hi")
        params = {
            "temperature": 0.2,
            "top_p": 0.9,
            "top_k": 5,
            "max_new_tokens": 64,
            "repetition_penalty": 1.1,
        }
        e = (await client.post(RUN, json=body(params=params))).json()
        assert e["params"] == params
        assert e["params_dropped"] == ["repetition_penalty", "top_k"]
        sent = stub_stats(stub_url)["last_body"]
        assert sent["max_tokens"] == 64
        assert sent["temperature"] == 0.2
        assert sent["top_p"] == 0.9
        assert "top_k" not in sent and "repetition_penalty" not in sent
        assert sent["messages"] == [{"role": "user", "content": "hi"}]
        assert sent["model"] == "gpt-4o-mini"

    async def test_explicit_version(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "one")
        await save(client, "p", "two")
        e = (await client.post(RUN, json=body(version=1))).json()
        assert e["rendered_prompt"] == "one"
        assert e["version"]["number"] == 1

    @pytest.mark.parametrize(
        ("directive", "error_type"),
        [
            ("[[stub status=500]]", "provider_error"),
            ("[[stub status=503]]", "provider_error"),
            ("[[stub status=429]]", "rate_limited"),
            ("[[stub status=401]]", "auth_error"),
            ("[[stub status=403]]", "auth_error"),
            ("[[stub status=400]]", "bad_request"),
            ("[[stub status=404]]", "bad_request"),
            ("[[stub delay=3]]", "timeout"),
            ("[[stub fault=malformed]]", "provider_error"),  # a 200 that is not JSON
            ("[[stub fault=nochoices]]", "provider_error"),  # JSON without a choice
        ],
    )
    async def test_provider_errors_are_recorded_as_failed(
        self, client: httpx.AsyncClient, stub_url: str, directive: str, error_type: str
    ) -> None:
        await save(client, "p", directive)
        r = await client.post(RUN, json=body())
        assert r.status_code == 200
        e = r.json()
        assert e["status"] == "failed"
        assert e["error"]["type"] == error_type
        assert e["error"]["message"]
        assert e["attempts"] == 1  # sync runs call once
        assert e["completed_at"] is not None
        assert stub_stats(stub_url)["calls"] == 1

    async def test_huge_reply_is_cut_at_a_character_boundary(
        self, client: httpx.AsyncClient
    ) -> None:
        await save(client, "p", "[[stub size=600001 char=é]]")
        e = (await client.post(RUN, json=body())).json()
        assert e["status"] == "succeeded"
        assert e["error"]["type"] == "truncated"
        stored = e["response_text"].encode("utf-8")
        assert 511_998 <= len(stored) <= 512_000
        assert "600001" in e["error"]["message"]

    async def test_reply_at_the_limit_is_kept_whole(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "[[stub size=512000]]")
        e = (await client.post(RUN, json=body())).json()
        assert e["error"] is None
        assert len(e["response_text"]) == 512_000


class TestNoProviderKey:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"openai_api_key": None})

    async def test_run_fails_with_auth_error_naming_the_variable(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save(client, "p", "hi")
        e = (await client.post(RUN, json=body())).json()
        assert e["status"] == "failed"
        assert e["error"]["type"] == "auth_error"
        assert "OPENAI_API_KEY" in e["error"]["message"]
        assert stub_stats(stub_url)["calls"] == 0


class TestRejectedBeforeAnyRow:
    @pytest.mark.parametrize("route", [RUN, SUBMIT])
    async def test_missing_variable_is_render_error(
        self, client: httpx.AsyncClient, route: str
    ) -> None:
        await save(client, "p", "Hello {{ name }} from {{ town }}")
        r = await client.post(route, json=body(variables={"name": "Ada"}))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "render_error"
        assert "town" in r.json()["error"]["message"]
        assert await execution_count(client) == 0

    @pytest.mark.parametrize("route", [RUN, SUBMIT])
    async def test_rendered_prompt_over_200kb(self, client: httpx.AsyncClient, route: str) -> None:
        await save(client, "p", "{{ big }}")
        r = await client.post(route, json=body(variables={"big": "x" * 204_801}))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "prompt_too_large"
        r = await client.post(route, json=body(variables={"big": "é" * 102_401}))
        assert r.json()["error"]["code"] == "prompt_too_large"
        assert await execution_count(client) == 0
        r = await client.post(route, json=body(variables={"big": "x" * 204_800}))
        assert r.status_code in (200, 202)

    @pytest.mark.parametrize(
        ("payload", "status", "code"),
        [
            (body("missing"), 404, "not_found"),
            (body(version=9), 404, "not_found"),
            (body(model_name="gpt-9"), 422, "unknown_model"),
            (body(provider="anthropic"), 422, "validation_error"),
            (body(params={"max_new_tokens": 16385}), 422, "validation_error"),
            (body(params={"temperature": 5}), 422, "validation_error"),
            (body(params={"seed": 1}), 422, "validation_error"),
            (body(variables={"x": "nul\x00"}), 422, "validation_error"),
            (body(variables=[1]), 422, "validation_error"),
            ({"model_name": "gpt-4o-mini"}, 422, "validation_error"),
            (body(prompt_name="bad name"), 422, "validation_error"),
            (body(extra_field=1), 422, "validation_error"),
        ],
    )
    @pytest.mark.parametrize("route", [RUN, SUBMIT])
    async def test_bad_requests(
        self, client: httpx.AsyncClient, route: str, payload: Any, status: int, code: str
    ) -> None:
        await save(client, "p", "hi")
        r = await client.post(route, json=payload)
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code
        assert await execution_count(client) == 0

    async def test_only_drafts_needs_explicit_version(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "draft text", activate=False)
        r = await client.post(RUN, json=body())
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"
        assert "version" in r.json()["error"]["message"]
        r = await client.post(RUN, json=body(version=1))
        assert r.json()["status"] == "succeeded"

    async def test_inactive_model_is_unknown(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        import sqlalchemy as sa

        from prompt_ledger.db.session import create_sync_engine

        engine = create_sync_engine(settings.resolved_database_url)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE models SET is_active = false WHERE model_name = 'gpt-4o'"))
        try:
            await save(client, "p", "hi")
            r = await client.post(RUN, json=body(model_name="gpt-4o"))
            assert r.json()["error"]["code"] == "unknown_model"
        finally:
            with engine.begin() as conn:
                conn.execute(sa.text("UPDATE models SET is_active = true"))
            engine.dispose()

    @pytest.mark.parametrize("route", [RUN, SUBMIT])
    async def test_tracking_prompt_is_mode_mismatch(
        self, client: httpx.AsyncClient, settings: Settings, route: str
    ) -> None:
        await make_tracking_prompt(settings, "Code.P")
        r = await client.post(route, json=body("Code.P", variables={"x": 1}))
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "mode_mismatch"
        assert "/v1/prompts/Code.P/execute" in r.json()["error"]["message"]
        assert await execution_count(client) == 0


class TestSubmit:
    async def test_queued_then_succeeded(self, client: httpx.AsyncClient, stub_url: str) -> None:
        await save(client, "p", "Hi {{ who }}")
        r = await client.post(SUBMIT, json=body(variables={"who": "Bob"}))
        assert r.status_code == 202
        assert r.json()["status"] == "queued"
        assert set(r.json()) == {"execution_id", "status"}
        e = await wait_done(client, r.json()["execution_id"])
        assert e["status"] == "succeeded"
        assert e["execution_mode"] == "async"
        assert e["response_text"] == "echo: Hi Bob"
        assert e["attempts"] == 1
        assert e["created_at"] <= e["started_at"] <= e["completed_at"]
        assert stub_stats(stub_url)["calls"] == 1

    async def test_retryable_failures_are_retried_until_success(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        key = uuid.uuid4().hex
        await save(client, "p", f"[[stub fail=2 key={key} status=503]] go")
        r = await client.post(SUBMIT, json=body())
        e = await wait_done(client, r.json()["execution_id"])
        assert e["status"] == "succeeded"
        assert e["attempts"] == 3
        assert e["error"] is None
        assert stub_stats(stub_url)["calls_by_key"][key] == 3

    @pytest.mark.parametrize(
        ("status", "error_type"), [(429, "rate_limited"), (502, "provider_error")]
    )
    async def test_retries_stop_after_the_configured_count(
        self, client: httpx.AsyncClient, stub_url: str, status: int, error_type: str
    ) -> None:
        key = uuid.uuid4().hex
        await save(client, "p", f"[[stub fail=10 key={key} status={status}]]")
        r = await client.post(SUBMIT, json=body())
        e = await wait_done(client, r.json()["execution_id"])
        assert e["status"] == "failed"
        assert e["attempts"] == 4  # 1 + len(EXECUTION_RETRY_DELAYS)
        assert e["error"]["type"] == error_type
        assert stub_stats(stub_url)["calls_by_key"][key] == 4

    async def test_timeouts_are_retried(self, settings: Settings, stub_url: str) -> None:
        from tests.conftest import running_app

        fast = settings.model_copy(update={"provider_timeout_s": 0.2})
        async with running_app(fast) as (_, client):
            key = uuid.uuid4().hex
            await save(client, "p", f"[[stub delay=0.5 key={key}]]")
            r = await client.post(SUBMIT, json=body())
            e = await wait_done(client, r.json()["execution_id"])
            assert e["status"] == "failed"
            assert e["error"]["type"] == "timeout"
            assert e["attempts"] == 4

    @pytest.mark.parametrize("status", [400, 401, 404])
    async def test_other_client_errors_fail_at_once(
        self, client: httpx.AsyncClient, stub_url: str, status: int
    ) -> None:
        await save(client, "p", f"[[stub status={status}]]")
        r = await client.post(SUBMIT, json=body())
        e = await wait_done(client, r.json()["execution_id"])
        assert e["status"] == "failed"
        assert e["attempts"] == 1
        assert stub_stats(stub_url)["calls"] == 1


class TestCancel:
    async def test_queued_execution_canceled_never_reaches_provider(
        self, app_and_client: tuple[FastAPI, httpx.AsyncClient], stub_url: str
    ) -> None:
        from prompt_ledger.services import executions

        app, client = app_and_client
        runtime = app.state.promptledger.runtime
        held: list[uuid.UUID] = []

        class Hold:
            async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
                held.append(execution_id)

        real, runtime.dispatcher = runtime.dispatcher, Hold()
        try:
            await save(client, "p", "hi")
            execution_id = (await client.post(SUBMIT, json=body())).json()["execution_id"]
            r = await client.post(f"/v1/executions/{execution_id}:cancel")
            assert r.status_code == 200
            assert r.json()["status"] == "canceled"
            assert r.json()["error"]["type"] == "canceled"
            assert r.json()["completed_at"] is not None
            # the message was already published: its delivery now does nothing
            assert held == [uuid.UUID(execution_id)]
            assert await executions.execute_queued(runtime, held[0]) is None
            assert stub_stats(stub_url)["calls"] == 0
            again = await client.post(f"/v1/executions/{execution_id}:cancel")
            assert again.status_code == 409
            assert again.json()["error"]["code"] == "not_cancelable"
        finally:
            runtime.dispatcher = real

    async def test_finished_execution_is_not_cancelable(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "hi")
        e = (await client.post(RUN, json=body())).json()
        r = await client.post(f"/v1/executions/{e['id']}:cancel")
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "not_cancelable"
        assert "succeeded" in r.json()["error"]["message"]

    async def test_unknown_execution(self, client: httpx.AsyncClient) -> None:
        missing = uuid.uuid4()
        assert (await client.post(f"/v1/executions/{missing}:cancel")).status_code == 404
        r = await client.get(f"/v1/executions/{missing}")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"
        r = await client.get("/v1/executions/not-a-uuid")
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"


class TestList:
    async def test_filters_and_newest_first(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await save(client, "a", "A")
        await save(client, "b", "[[stub status=400]]")
        ids = []
        for name in ("a", "b", "a"):
            ids.append((await client.post(RUN, json=body(name))).json()["id"])
        submitted = (await client.post(SUBMIT, json=body("a"))).json()["execution_id"]
        await wait_done(client, submitted)
        ids.append(submitted)
        items = (await client.get("/v1/executions")).json()["items"]
        assert [e["id"] for e in items] == ids[::-1]

        async def get_ids(**params: Any) -> list[str]:
            r = await client.get("/v1/executions", params=params)
            assert r.status_code == 200, r.text
            return [e["id"] for e in r.json()["items"]]

        assert await get_ids(prompt_name="a") == [ids[3], ids[2], ids[0]]
        assert await get_ids(status="failed") == [ids[1]]
        assert await get_ids(execution_mode="async") == [ids[3]]
        assert await get_ids(prompt_mode="tracking") == []
        assert await get_ids(prompt_mode="full") == ids[::-1]
        middle = items[1]["created_at"]
        assert await get_ids(since=middle) == [ids[3], ids[2]]
        assert await get_ids(until=middle) == [ids[1], ids[0]]
        assert await get_ids(since="2000-01-01T00:00:00", until="2000-01-02T00:00:00") == []

    async def test_cursor_pages_through_everything_once(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "hi")
        ids = [(await client.post(RUN, json=body())).json()["id"] for _ in range(7)]
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/v1/executions", params=params)).json()
            seen += [e["id"] for e in page["items"]]
            cursor = page["next_cursor"]
            if not cursor:
                break
        assert seen == ids[::-1]

    @pytest.mark.parametrize(
        "params",
        [{"limit": 501}, {"status": "done"}, {"since": "yesterday"}, {"execution_mode": "x"}],
    )
    async def test_bad_query(self, client: httpx.AsyncClient, params: dict[str, Any]) -> None:
        r = await client.get("/v1/executions", params=params)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"

    async def test_bad_cursor(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/executions", params={"cursor": "bm9wZQ=="})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_request"


class TestInFlight:
    async def test_hundreds_of_slow_sync_runs_are_in_flight_together(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        """A provider call holds neither a thread nor a database connection."""
        await save(client, "p", "[[stub delay=1]] hi")
        started = time.monotonic()
        responses = await asyncio.gather(*(client.post(RUN, json=body()) for _ in range(300)))
        elapsed = time.monotonic() - started
        assert [r.json()["status"] for r in responses] == ["succeeded"] * 300
        assert stub_stats(stub_url)["max_in_flight"] >= 150
        assert elapsed < 15  # one at a time would take 300 s
