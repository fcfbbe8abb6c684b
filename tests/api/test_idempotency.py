"""Idempotency-Key on run and submit (SPEC §6), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.api.test_executions import RUN, SUBMIT, body, execution_count, save, wait_done
from tests.conftest import running_app

from prompt_ledger.config import Settings
from prompt_ledger.testing.stub_provider import stub_stats


def keyed(key: str) -> dict[str, str]:
    return {"Idempotency-Key": key}


class TestReplay:
    async def test_run_replays_without_calling_again(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save(client, "p", "hi")
        first = await client.post(RUN, json=body(), headers=keyed("run-1"))
        assert first.status_code == 200
        assert "Idempotent-Replayed" not in first.headers
        again = await client.post(RUN, json=body(), headers=keyed("run-1"))
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == first.json()
        assert again.json()["idempotency_key"] == "run-1"
        assert stub_stats(stub_url)["calls"] == 1
        assert await execution_count(client) == 1

    async def test_equal_json_in_another_key_order_replays(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "hi")
        first = await client.post(
            RUN,
            content=b'{"prompt_name":"p","model_name":"gpt-4o-mini"}',
            headers={**keyed("k"), "content-type": "application/json"},
        )
        again = await client.post(
            RUN,
            content=b'{"model_name": "gpt-4o-mini", "prompt_name": "p"}',
            headers={**keyed("k"), "content-type": "application/json"},
        )
        assert again.headers.get("Idempotent-Replayed") == "true"
        assert again.json()["id"] == first.json()["id"]

    async def test_submit_replays_202_with_the_same_id(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save(client, "p", "hi")
        first = await client.post(SUBMIT, json=body(), headers=keyed("sub-1"))
        assert first.status_code == 202
        await wait_done(client, first.json()["execution_id"])
        again = await client.post(SUBMIT, json=body(), headers=keyed("sub-1"))
        assert again.status_code == 202
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json() == {"execution_id": first.json()["execution_id"], "status": "succeeded"}
        assert stub_stats(stub_url)["calls"] == 1

    async def test_replay_of_a_failed_run_is_the_failed_run(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save(client, "p", "[[stub status=500]]")
        first = await client.post(RUN, json=body(), headers=keyed("f"))
        again = await client.post(RUN, json=body(), headers=keyed("f"))
        assert again.json()["status"] == "failed"
        assert again.json()["id"] == first.json()["id"]
        assert stub_stats(stub_url)["calls"] == 1


class TestMisuse:
    async def test_other_body_is_422_reused(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "hi {{ x }}")
        await client.post(RUN, json=body(variables={"x": 1}), headers=keyed("k"))
        r = await client.post(RUN, json=body(variables={"x": 2}), headers=keyed("k"))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "idempotency_key_reused"
        assert await execution_count(client) == 1

    async def test_other_route_is_422_reused(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "hi")
        await client.post(RUN, json=body(), headers=keyed("k"))
        r = await client.post(SUBMIT, json=body(), headers=keyed("k"))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "idempotency_key_reused"

    @pytest.mark.parametrize("key", ["", "x" * 256, "naïve", "tab\there", "new\nline"])
    async def test_malformed_key_is_400(self, client: httpx.AsyncClient, key: str) -> None:
        await save(client, "p", "hi")
        r = await client.post(RUN, json=body(), headers={"Idempotency-Key": key.encode("utf-8")})  # type: ignore[dict-item]
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_request"
        assert await execution_count(client) == 0

    async def test_longest_and_odd_printable_keys_are_fine(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "hi")
        for key in ("x" * 255, " ~!@#$%^&*()"):
            assert (await client.post(RUN, json=body(), headers=keyed(key))).status_code == 200

    async def test_rejected_request_does_not_use_up_the_key(
        self, client: httpx.AsyncClient
    ) -> None:
        await save(client, "p", "hi {{ x }}")
        r = await client.post(RUN, json=body(), headers=keyed("k"))
        assert r.json()["error"]["code"] == "render_error"
        r = await client.post(RUN, json=body(variables={"x": 1}), headers=keyed("k"))
        assert r.status_code == 200
        assert "Idempotent-Replayed" not in r.headers

    async def test_in_flight_sync_run_is_409(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save(client, "p", "[[stub delay=1]]")
        first = asyncio.create_task(client.post(RUN, json=body(), headers=keyed("slow")))
        await asyncio.sleep(0.4)
        r = await client.post(RUN, json=body(), headers=keyed("slow"))
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "idempotency_key_in_use"
        assert (await first).json()["status"] == "succeeded"
        done = await client.post(RUN, json=body(), headers=keyed("slow"))
        assert done.headers["Idempotent-Replayed"] == "true"
        assert stub_stats(stub_url)["calls"] == 1


class TestConcurrentKeys:
    @pytest.fixture(params=["postgres", "psycopg"])
    def db_url(self, request: pytest.FixtureRequest) -> str:
        url: str = request.getfixturevalue(f"{request.param}_url")
        return url

    @pytest.fixture
    async def replicas(self, settings: Settings) -> AsyncIterator[list[httpx.AsyncClient]]:
        async with running_app(settings) as (_, one), running_app(settings) as (_, two):
            yield [one, two]

    async def test_fifty_concurrent_submits_with_one_key_run_once(
        self, replicas: list[httpx.AsyncClient], stub_url: str
    ) -> None:
        await save(replicas[0], "p", "hi")
        responses = await asyncio.gather(
            *(replicas[i % 2].post(SUBMIT, json=body(), headers=keyed("same")) for i in range(50))
        )
        assert {r.status_code for r in responses} == {202}
        assert len({r.json()["execution_id"] for r in responses}) == 1
        assert sum(r.headers.get("Idempotent-Replayed") == "true" for r in responses) == 49
        await wait_done(replicas[0], responses[0].json()["execution_id"])
        await asyncio.sleep(0.2)
        assert stub_stats(stub_url)["calls"] == 1
        assert await execution_count(replicas[0]) == 1

    async def test_concurrent_sync_runs_with_one_key(
        self, replicas: list[httpx.AsyncClient], stub_url: str
    ) -> None:
        await save(replicas[0], "p", "[[stub delay=0.3]]")
        responses = await asyncio.gather(
            *(replicas[i % 2].post(RUN, json=body(), headers=keyed("sync")) for i in range(20))
        )
        codes = sorted(r.status_code for r in responses)
        assert codes.count(200) >= 1
        assert set(codes) <= {200, 409}
        assert {r.json()["id"] for r in responses if r.status_code == 200} != set()
        assert len({r.json()["id"] for r in responses if r.status_code == 200}) == 1
        assert stub_stats(stub_url)["calls"] == 1
