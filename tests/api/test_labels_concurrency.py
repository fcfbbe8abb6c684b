"""Concurrent label moves, on PostgreSQL through both drivers (row locks settle them;
SQLite admits one writer at a time): two API replicas, real concurrent requests."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
from tests.api.test_concurrency import clients, db_url  # noqa: F401  (fixtures)

MOVES = 24


def target(e: dict[str, Any]) -> dict[str, Any]:
    return {"version_number": e["version_number"], "split": e["split"]}


async def setup(c: httpx.AsyncClient) -> None:
    for n in (1, 2, 3):
        r = await c.put("/v1/prompts/race", json={"template_source": f"v{n}"})
        assert r.status_code == 201


def move(i: int) -> dict[str, Any]:
    if i % 4 == 3:
        return {"split": [{"version": 1 + i % 2, "weight": 30}, {"version": 3, "weight": 70}]}
    return {"version": 1 + i % 3}


async def test_concurrent_moves_of_one_label_lose_none(
    clients: list[httpx.AsyncClient],  # noqa: F811
) -> None:
    await setup(clients[0])
    responses = await asyncio.gather(
        *(
            clients[i % 2].put("/v1/prompts/race/labels/production", json=move(i))
            for i in range(MOVES)
        )
    )
    bad = [r.text for r in responses if r.status_code not in (200, 201)]
    assert not bad, bad
    assert [r.status_code for r in responses].count(201) == 1
    events = [
        e
        for e in (await clients[0].get("/v1/prompts/race/events")).json()["items"]
        if e["type"] == "label_moved"
    ]
    # Each move saw the one before it: a chain, with no move lost or applied twice.
    assert events[0]["previous"] is None
    for before, after in itertools.pairwise(events):
        assert after["previous"] == target(before)
        assert target(after) != target(before)  # a move to where it was logs nothing
    labels = (await clients[1].get("/v1/prompts/race/labels")).json()["items"]
    production = next(i for i in labels if i["label"] == "production")
    assert target(production) == target(events[-1])


async def test_concurrent_new_labels_all_land(clients: list[httpx.AsyncClient]) -> None:  # noqa: F811
    await setup(clients[0])
    responses = await asyncio.gather(
        *(
            clients[i % 2].put(f"/v1/prompts/race/labels/l{i}", json={"version": 1 + i % 3})
            for i in range(MOVES)
        )
    )
    assert [r.status_code for r in responses] == [201] * MOVES
    labels = (await clients[0].get("/v1/prompts/race/labels")).json()["items"]
    assert {i["label"]: i["version_number"] for i in labels} == {
        "active": 3,
        **{f"l{i}": 1 + i % 3 for i in range(MOVES)},
    }
    events = (await clients[0].get("/v1/prompts/race/events")).json()["items"]
    assert sorted(e["label"] for e in events if e["type"] == "label_moved") == sorted(
        f"l{i}" for i in range(MOVES)
    )


async def test_label_moves_beside_saves_and_activations(
    clients: list[httpx.AsyncClient],  # noqa: F811
) -> None:
    """Label moves, new versions and moves of ``active`` at once: every writer of the
    prompt takes its turn on the one row lock."""
    await setup(clients[0])
    calls = []
    for i in range(MOVES):
        c = clients[i % 2]
        if i % 3 == 0:
            calls.append(c.put("/v1/prompts/race", json={"template_source": f"new {i}"}))
        elif i % 3 == 1:
            calls.append(c.put("/v1/prompts/race/labels/active", json={"version": 1 + i % 2}))
        else:
            calls.append(c.put("/v1/prompts/race/labels/production", json=move(i)))
    responses = await asyncio.gather(*calls)
    bad = [r.text for r in responses if r.status_code not in (200, 201)]
    assert not bad, bad
    versions = (await clients[0].get("/v1/prompts/race/versions")).json()["items"]
    assert [v["status"] for v in versions].count("active") == 1
    assert len(versions) == 3 + MOVES // 3
    active = next(v["version_number"] for v in versions if v["status"] == "active")
    labels = (await clients[1].get("/v1/prompts/race/labels")).json()["items"]
    assert labels[0] == {**labels[0], "label": "active", "version_number": active}
    activations = [
        e
        for e in (await clients[0].get("/v1/prompts/race/events")).json()["items"]
        if e["type"] == "activated"
    ]
    for before, after in itertools.pairwise(activations):
        assert after["previous_version_number"] == before["version_number"]
    assert activations[-1]["version_number"] == active
