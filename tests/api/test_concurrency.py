"""Concurrent writers of one prompt, on PostgreSQL (SQLite admits one writer at a time)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from tests.conftest import API_KEY

from prompt_ledger.api.app import create_app
from prompt_ledger.config import Settings

WRITERS = 20


@pytest.fixture(params=["postgres", "psycopg"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Row locks settle these races: PostgreSQL only, through both of its drivers."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
async def clients(settings: Settings) -> AsyncIterator[list[httpx.AsyncClient]]:
    """Two app instances on one database: like two API replicas."""
    apps = [create_app(settings) for _ in range(2)]
    clients = [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://t",
            headers={"X-API-Key": API_KEY},
        )
        for app in apps
    ]
    yield clients
    for c, app in zip(clients, apps, strict=True):
        await c.aclose()
        await app.state.promptledger.db.dispose()


async def test_same_text_concurrently_gives_one_version(
    clients: list[httpx.AsyncClient],
) -> None:
    responses = await asyncio.gather(
        *(
            clients[i % 2].put("/v1/prompts/race", json={"template_source": "same {{ x }}"})
            for i in range(WRITERS)
        )
    )
    assert sorted(r.status_code for r in responses) == [200] * (WRITERS - 1) + [201]
    assert {r.json()["version"]["version_number"] for r in responses} == {1}
    items = (await clients[0].get("/v1/prompts/race/versions")).json()["items"]
    assert len(items) == 1
    events = (await clients[0].get("/v1/prompts/race/events")).json()["items"]
    assert [e["type"] for e in events] == ["created", "version_created", "activated"]


async def test_different_texts_concurrently_get_numbers_without_gaps(
    clients: list[httpx.AsyncClient],
) -> None:
    responses = await asyncio.gather(
        *(
            clients[i % 2].put("/v1/prompts/race", json={"template_source": f"text {i}"})
            for i in range(WRITERS)
        )
    )
    assert [r.status_code for r in responses] == [201] * WRITERS
    numbers = sorted(r.json()["version"]["version_number"] for r in responses)
    assert numbers == list(range(1, WRITERS + 1))
    items = (await clients[0].get("/v1/prompts/race/versions")).json()["items"]
    assert [v["version_number"] for v in items] == list(range(WRITERS, 0, -1))
    assert [v["status"] for v in items].count("active") == 1
    texts = {v["template_source"] for v in items}
    assert texts == {f"text {i}" for i in range(WRITERS)}


async def test_concurrent_saves_to_an_existing_prompt(clients: list[httpx.AsyncClient]) -> None:
    await clients[0].put("/v1/prompts/race", json={"template_source": "base"})
    texts = ["base", "x", "y", "x", "y", "base"] * 3
    responses = await asyncio.gather(
        *(
            clients[i % 2].put("/v1/prompts/race", json={"template_source": t})
            for i, t in enumerate(texts)
        )
    )
    assert all(r.status_code in (200, 201) for r in responses)
    assert sum(r.status_code == 201 for r in responses) == 2
    items = (await clients[0].get("/v1/prompts/race/versions")).json()["items"]
    assert sorted(v["template_source"] for v in items) == ["base", "x", "y"]
    assert [v["status"] for v in items].count("active") == 1
