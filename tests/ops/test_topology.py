"""The production topology without containers: two ``promptledger serve`` processes (the second
with two uvicorn worker processes) and two ``promptledger worker`` processes on one PostgreSQL
database and a private ``redis-server``, started by ``prompt_ledger.testing.stack`` exactly as
``make stack`` starts them.

A few hundred sync runs and async submits go through both APIs over real HTTP, some with
idempotency keys, some of those sent twice (one after the other, to the other API, or both at
once), some failing once at the provider (async: retried). Every execution must have finished
exactly once: one row per request, one row per idempotency key, every row terminal, and the
provider called exactly ``attempts`` times for it. Then /metrics on both APIs must agree with
the ledger and count exactly the requests each API answered.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml
from prometheus_client.parser import text_string_to_metric_families
from tests.conftest import OPENAI_KEY, clean_database

from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.testing.stack import Stack, free_port
from prompt_ledger.testing.stub_provider import stub_stats

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

LOGICAL_REQUESTS = 240  # plus their duplicates: ~300 HTTP requests
CONCURRENCY = 24
FINISH_TIMEOUT_S = 40
RUN = "/v1/executions:run"
SUBMIT = "/v1/executions:submit"
TEMPLATE = "[[stub key={{ k }} delay={{ d }} fail={{ f }}]] job {{ k }}"


@dataclass
class Request:
    """One logical request: its stub key, how it is sent, and what came back."""

    k: str
    sync: bool
    api: int
    delay: float
    fail_once: bool
    idempotency_key: str | None = None
    duplicate: str | None = None  # None, "after" (other API, once answered) or "together"
    answers: list[tuple[int, int, dict[str, Any], bool]] = field(default_factory=list)

    @property
    def path(self) -> str:
        return RUN if self.sync else SUBMIT

    @property
    def attempts(self) -> int:
        return 2 if self.fail_once else 1


def plan(rng: random.Random) -> list[Request]:
    requests = []
    for n in range(LOGICAL_REQUESTS):
        sync = rng.random() < 0.4
        r = Request(
            k=f"t{n}",
            sync=sync,
            api=n % 2,
            delay=rng.choice((0, 0, 0.05, 0.2)),
            fail_once=not sync and rng.random() < 0.15,  # a sync run calls the provider once
        )
        if rng.random() < 0.4:
            r.idempotency_key = f"idem-{n}-{rng.getrandbits(32):08x}"
            r.duplicate = rng.choice((None, "after", "together"))
        requests.append(r)
    return requests


@pytest.fixture
def stack(postgres_url: str, stub_url: str, tmp_path: Path) -> Iterator[Stack]:
    clean_database(postgres_url)
    with Stack(
        database_url=postgres_url,
        provider_url=stub_url,
        provider_key=OPENAI_KEY,
        folder=tmp_path / "stack",
        api_ports=[free_port(), free_port()],
        api_processes=[1, 2],
        workers=2,
        extra_env={
            "EXECUTION_RETRY_DELAYS": "0.1,0.2,0.2",
            "SWEEP_INTERVAL_S": "1",
            # A stock PostgreSQL allows 100 connections in all, shared with the rest of the
            # suite: 5 processes x (4 + 4 overflow) stay well under it.
            "DATABASE_POOL_SIZE": "4",
            "PROMPTLEDGER_WORKER_MAX_IN_FLIGHT": "8",
        },
    ) as running:
        yield running


async def send(http: httpx.AsyncClient, r: Request, gate: asyncio.Semaphore, api: int) -> None:
    body = {
        "prompt_name": "topo",
        "model_name": "gpt-4o-mini",
        "variables": {"k": r.k, "d": r.delay, "f": int(r.fail_once)},
    }
    headers = {"Idempotency-Key": r.idempotency_key} if r.idempotency_key else {}
    async with gate:
        response = await http.post(r.path, json=body, headers=headers)
    replayed = response.headers.get("idempotent-replayed") == "true"
    r.answers.append((api, response.status_code, response.json(), replayed))


async def drive(stack: Stack, requests: list[Request]) -> None:
    headers = {"X-API-Key": stack.api_key}
    limits = httpx.Limits(max_connections=CONCURRENCY)
    clients = [
        httpx.AsyncClient(base_url=url, headers=headers, timeout=30, limits=limits)
        for url in stack.api_urls
    ]
    gate = asyncio.Semaphore(CONCURRENCY)
    try:
        r = await clients[0].put("/v1/prompts/topo", json={"template_source": TEMPLATE})
        assert r.status_code == 201, r.text

        async def one(req: Request) -> None:
            first = send(clients[req.api], req, gate, req.api)
            other = 1 - req.api
            if req.duplicate == "together":
                await asyncio.gather(first, send(clients[other], req, gate, other))
                return
            await first
            if req.duplicate == "after":
                await send(clients[other], req, gate, other)

        await asyncio.gather(*(one(req) for req in requests))
    finally:
        for client in clients:
            await client.aclose()


def ledger(url: str) -> list[dict[str, Any]]:
    engine = create_sync_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    "SELECT id, status, execution_mode, attempts, idempotency_key, variables "
                    "FROM executions"
                )
            )
            return [dict(row._mapping) for row in rows]
    finally:
        engine.dispose()


async def wait_all_finished(url: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + FINISH_TIMEOUT_S
    while True:
        rows = await asyncio.to_thread(ledger, url)
        unfinished = [r for r in rows if r["status"] in ("queued", "running")]
        if not unfinished:
            return rows
        assert time.monotonic() < deadline, f"{len(unfinished)} not finished: {unfinished[:3]}"
        await asyncio.sleep(0.2)


def finished_lines(log: str) -> list[str]:
    """Execution ids of the ``execution_finished`` lines in a process's stderr.

    A line is decoded up to the end of its JSON object: structlog prints the object and its
    newline in two writes, so a Celery line from another thread can land in between.
    """
    decoder = json.JSONDecoder()
    ids = []
    for line in log.splitlines():
        if line.startswith("{") and '"execution_finished"' in line:
            event, _ = decoder.raw_decode(line)
            ids.append(event["execution_id"])
    return ids


def scrape(url: str) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    samples: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, {})[frozenset(s.labels.items())] = s.value
    return samples


def healthcheck(stack: Stack, service: str) -> None:
    """Run docker-compose.yml's health check command of ``service`` against the stack."""
    compose = yaml.safe_load((Path(__file__).parents[2] / "docker-compose.yml").read_text())
    kind, *command = compose["services"][service]["healthcheck"]["test"]
    port = str(stack.api_ports[0])
    command = [part.replace("$$", "$").replace(":8000/", f":{port}/") for part in command]
    if kind == "CMD-SHELL":
        command = ["sh", "-c", *command]
    env = {
        **os.environ,
        "REDIS_URL": stack.redis_url or "",
        "HOSTNAME": socket.gethostname(),  # what Docker sets in a container
    }
    if command[0] == "python":
        command[0] = sys.executable
    result = subprocess.run(command, env=env, capture_output=True, timeout=30, cwd=stack.folder)
    assert result.returncode == 0, (service, result.stdout, result.stderr)


async def test_every_execution_finishes_exactly_once(
    stack: Stack, postgres_url: str, stub_url: str
) -> None:
    started = time.monotonic()
    requests = plan(random.Random(20261126))
    await drive(stack, requests)
    rows = await wait_all_finished(postgres_url)
    elapsed = time.monotonic() - started

    # every answer is a success, a replay, or (a sync duplicate sent together) 409 in-use
    ids: dict[str, str] = {}
    for r in requests:
        assert len(r.answers) == (2 if r.duplicate else 1)
        for _api, status, body, _replayed in r.answers:
            if status == 409:
                assert r.sync and r.duplicate == "together", body
                assert body["error"]["code"] == "idempotency_key_in_use"
                continue
            assert status == (200 if r.sync else 202), body
            execution_id = body["id"] if r.sync else body["execution_id"]
            assert ids.setdefault(r.k, execution_id) == execution_id  # a replay: the same row
        fresh = [a for a in r.answers if a[1] != 409 and not a[3]]
        assert len(fresh) == 1, r.answers  # exactly one answer created the execution
    duplicates = sum(r.duplicate is not None for r in requests)
    http_requests = LOGICAL_REQUESTS + duplicates

    # one row per logical request, per idempotency key; every row terminal and run once
    by_k = {row["variables"]["k"]: row for row in rows}
    assert len(rows) == len(by_k) == LOGICAL_REQUESTS
    assert {str(row["id"]) for row in rows} == set(ids.values())
    keyed = {r.idempotency_key for r in requests if r.idempotency_key}
    assert {row["idempotency_key"] for row in rows} - {None} == keyed
    calls = stub_stats(stub_url)["calls_by_key"]
    for r in requests:
        row = by_k[r.k]
        assert row["status"] == "succeeded", row
        assert row["execution_mode"] == ("sync" if r.sync else "async")
        assert row["attempts"] == r.attempts, row
        assert calls.get(r.k) == r.attempts, (r.k, calls.get(r.k), row)
    assert sum(calls.values()) == sum(r.attempts for r in requests)

    # sync runs finished in the APIs, async ones on the workers: each exactly once, and
    # every process took part
    api_logs = [finished_lines(p.stderr()) for p in stack.apis]
    worker_logs = [finished_lines(p.stderr()) for p in stack.worker_processes]
    sync_ids = {str(row["id"]) for row in rows if row["execution_mode"] == "sync"}
    async_ids = {str(row["id"]) for row in rows if row["execution_mode"] == "async"}
    assert sorted(i for ids in api_logs for i in ids) == sorted(sync_ids)
    assert sorted(i for ids in worker_logs for i in ids) == sorted(async_ids)
    assert all(api_logs) and all(worker_logs), "every API and every worker ran executions"

    # /metrics: both APIs report the same ledger, and count the requests each one answered
    scrapes = [scrape(url) for url in stack.api_urls]
    for m in scrapes:
        assert sum(m["promptledger_executions_total"].values()) == LOGICAL_REQUESTS
        assert m["promptledger_executions_total"] == scrapes[0]["promptledger_executions_total"]
        assert sum(m.get("promptledger_executions_in_progress", {}).values()) == 0
        assert m["promptledger_queue_depth"][frozenset()] == 0
    for api, m in enumerate(scrapes):
        answered = Counter(
            (req.path, str(status))
            for req in requests
            for (who, status, _, _) in req.answers
            if who == api
        )
        counted = {
            (dict(labels)["route"], dict(labels)["status"]): value
            for labels, value in m["promptledger_http_request_duration_seconds_count"].items()
            if dict(labels)["method"] == "POST"
        }
        assert counted == answered, f"api{api}"

    # the compose files' health checks pass against these processes
    for service in ("api", "worker"):
        healthcheck(stack, service)

    print(
        f"\ntopology: {LOGICAL_REQUESTS} executions checked ({len(sync_ids)} sync, "
        f"{len(async_ids)} async, {sum(r.fail_once for r in requests)} retried once), "
        f"{duplicates} duplicates, {http_requests} HTTP requests, "
        f"{elapsed:.1f}s to drive and finish"
    )
