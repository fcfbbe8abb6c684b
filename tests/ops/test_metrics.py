"""GET /metrics: scraped after real executions, parsed with prometheus_client's own parser, and
every number compared with what the ledger holds (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from alembic import command
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from tests.api.test_executions import RUN, SUBMIT, body, save, wait_done
from tests.api.test_tracking import item, register
from tests.conftest import running_app
from tests.workers.conftest import RedisServer, running_redis_server

from prompt_ledger.api.http_metrics import UNMATCHED_ROUTE
from prompt_ledger.config import Settings
from prompt_ledger.db import migrate
from prompt_ledger.db.tables import TOKEN_BUCKETS
from prompt_ledger.services.analytics import latency_bucket
from prompt_ledger.services.metrics import LATENCY_BOUNDS_S, latency_bound_index

FINISHED = ("succeeded", "failed", "canceled")
Labels = frozenset[tuple[str, str]]


# --- scraping and parsing ---------------------------------------------------------------


async def scrape_text(app: FastAPI) -> tuple[httpx.Response, str]:
    """GET /metrics with no API key at all."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as anon:
        r = await anon.get("/metrics")
    return r, r.text


class Scrape:
    """The samples of one scrape: ``scrape["name"]`` maps label sets to values."""

    def __init__(self, text: str) -> None:
        self.types: dict[str, str] = {}
        self.samples: defaultdict[str, dict[Labels, float]] = defaultdict(dict)
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                self.samples[sample.name][frozenset(sample.labels.items())] = sample.value

    def __getitem__(self, name: str) -> dict[Labels, float]:
        return self.samples.get(name, {})

    def value(self, name: str, **labels: str) -> float:
        return self[name].get(frozenset(labels.items()), 0.0)

    def without(self, name: str, label: str) -> dict[Labels, float]:
        """Samples of ``name`` whose labels include ``label``, keyed without it."""
        out: dict[Labels, float] = {}
        for labels, value in self[name].items():
            if any(k == label for k, _ in labels):
                out[frozenset((k, v) for k, v in labels if k != label)] = value
        return out


async def scrape(app: FastAPI) -> Scrape:
    r, text = await scrape_text(app)
    assert r.status_code == 200, text
    return Scrape(text)


def labels(**values: str) -> Labels:
    return frozenset(values.items())


# --- what the ledger holds ----------------------------------------------------------------


async def ledger_rows(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 500}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/v1/executions", params=params)).json()
        rows += page["items"]
        cursor = page["next_cursor"]
        if not cursor:
            return rows


def execution_key(e: dict[str, Any]) -> Labels:
    return labels(
        status=e["status"],
        provider=e["model"]["provider"],
        model=e["model"]["name"],
        prompt_mode=e["prompt"]["mode"],
        execution_mode=e["execution_mode"],
    )


def expected_latency(rows: list[dict[str, Any]]) -> dict[str, dict[Labels, float]]:
    """The latency histogram's samples, from each row's latency_ms."""
    out: dict[str, dict[Labels, float]] = defaultdict(dict)
    bounds = [repr(float(b)) for b in LATENCY_BOUNDS_S] + ["+Inf"]
    for mode in ("full", "tracking"):
        ms = [
            e["telemetry"]["latency_ms"]
            for e in rows
            if e["prompt"]["mode"] == mode
            and e["status"] in FINISHED
            and e["telemetry"]["latency_ms"] is not None
        ]
        per_bound = Counter(latency_bound_index(latency_bucket(v)) for v in ms)
        cumulative = 0
        for i, le in enumerate(bounds):
            cumulative += per_bound[i]
            out["promptledger_execution_latency_seconds_bucket"][
                labels(prompt_mode=mode, le=le)
            ] = cumulative
        out["promptledger_execution_latency_seconds_count"][labels(prompt_mode=mode)] = len(ms)
        out["promptledger_execution_latency_seconds_sum"][labels(prompt_mode=mode)] = sum(ms) / 1000
    return out


def expected_tokens(rows: list[dict[str, Any]], kind: str) -> dict[str, dict[Labels, float]]:
    name = f"promptledger_execution_{kind}_tokens"
    out: dict[str, dict[Labels, float]] = defaultdict(dict)
    groups: defaultdict[Labels, list[int | None]] = defaultdict(list)
    for e in rows:
        if e["status"] in FINISHED:
            key = labels(
                provider=e["model"]["provider"],
                model=e["model"]["name"],
                prompt_mode=e["prompt"]["mode"],
            )
            groups[key].append(e["telemetry"][f"{kind}_tokens"])
    for key, values in groups.items():
        known = [v for v in values if v is not None]
        for bound in TOKEN_BUCKETS:
            le = key | {("le", repr(float(bound)))}
            out[f"{name}_bucket"][le] = sum(v <= bound for v in known)
        out[f"{name}_bucket"][key | {("le", "+Inf")}] = len(known)
        out[f"{name}_count"][key] = len(known)
        out[f"{name}_sum"][key] = sum(known)
    return out


# --- fixtures -------------------------------------------------------------------------------


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture(scope="module")
def idle_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A private redis-server that no worker consumes from."""
    with running_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
async def stalled(
    settings: Settings, idle_redis: RedisServer
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """An app publishing to a queue no worker reads: submitted executions stay queued."""
    idle_redis.client().flushdb()
    async with running_app(settings.model_copy(update={"redis_url": idle_redis.url})) as pair:
        yield pair


# --- tests ----------------------------------------------------------------------------------


class TestExposition:
    async def test_no_api_key_prometheus_text_and_an_empty_ledger(
        self, app_and_client: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        app, _ = app_and_client
        r, text = await scrape_text(app)
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/plain")
        assert "version=" in r.headers["content-type"]
        m = Scrape(text)
        assert m.value("promptledger_ledger_up") == 1
        assert m.types["promptledger_executions"] == "counter"
        assert m.types["promptledger_execution_latency_seconds"] == "histogram"
        assert m.types["promptledger_http_request_duration_seconds"] == "histogram"
        assert m["promptledger_executions_total"] == {}
        assert m["promptledger_executions_in_progress"] == {}
        assert m.value("promptledger_queue_depth") == 0
        assert m.value("promptledger_queue_due") == 0
        assert m.value("promptledger_queue_oldest_age_seconds") == 0
        for mode in ("full", "tracking"):
            assert m.value("promptledger_prompts", mode=mode) == 0
            assert m.value("promptledger_execution_latency_seconds_count", prompt_mode=mode) == 0
            assert (
                m.value(
                    "promptledger_execution_latency_seconds_bucket", prompt_mode=mode, le="+Inf"
                )
                == 0
            )
        assert "process_cpu_seconds_total" in m.samples or "python_info" in m.samples

    async def test_database_down_still_answers_with_ledger_up_zero(
        self, settings: Settings
    ) -> None:
        unreachable = settings.model_copy(
            update={"database_url": f"postgresql://nobody@127.0.0.1:{closed_port()}/none"}
        )
        async with running_app(unreachable) as (app, http):
            assert (await http.get("/health")).status_code == 200
            started = time.monotonic()
            m = await scrape(app)
        assert time.monotonic() - started < 10
        assert m.value("promptledger_ledger_up") == 0
        assert m["promptledger_executions_total"] == {}
        assert m["promptledger_http_request_duration_seconds_count"] != {}


class TestLedgerNumbers:
    async def test_every_number_equals_the_ledger(
        self, app_and_client: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        app, client = app_and_client
        await save(client, "m.words", "[[stub delay={{ d }}]] {{ words }}")
        await save(client, "m.bad", "[[stub status=400]] refused")
        await save(client, "m.silent", "[[stub usage=none]] no usage")
        await register(client, item("Code.M", "code {{ words }}"))
        sizes = (1, 20, 100, 300)
        runs = [
            client.post(
                RUN,
                json=body(
                    "m.words",
                    model_name=model,
                    variables={"d": d, "words": "w " * n},
                ),
            )
            for n in sizes
            for d in (0, 0.12)
            for model in ("gpt-4o-mini", "gpt-4o")
        ]
        runs += [client.post(RUN, json=body("m.bad")), client.post(RUN, json=body("m.silent"))]
        runs += [
            client.post(
                "/v1/prompts/Code.M/execute",
                json={"variables": {"words": "x " * n}, "model_name": "gpt-4o", "mode": mode},
            )
            for n in sizes
            for mode in ("sync", "async")
        ]
        runs += [
            client.post(SUBMIT, json=body("m.words", variables={"d": 0.06, "words": "a b c"}))
            for _ in range(3)
        ]
        answers = await asyncio.gather(*runs)
        assert {r.status_code for r in answers} <= {200, 202}, [r.text for r in answers]
        for r in answers:
            if r.status_code == 202:
                await wait_done(client, r.json()["execution_id"])

        m = await scrape(app)
        rows = await ledger_rows(client)
        assert len(rows) == len(runs)
        assert m.value("promptledger_ledger_up") == 1

        finished = Counter(execution_key(e) for e in rows if e["status"] in FINISHED)
        assert m["promptledger_executions_total"] == dict(finished)
        assert m["promptledger_executions_in_progress"] == {}
        assert sum(m["promptledger_executions_total"].values()) == len(rows)
        assert m.value("promptledger_executions_total", **self.label_of(rows, "m.bad")) == 1

        for name, samples in expected_latency(rows).items():
            assert m[name] == pytest.approx(samples), name
        for kind in ("prompt", "response"):
            for name, samples in expected_tokens(rows, kind).items():
                assert m[name] == pytest.approx(samples), name
        # the silent provider's execution has no token counts: it is in no token bucket
        assert sum(m["promptledger_execution_prompt_tokens_count"].values()) == len(rows) - 2

        assert m.value("promptledger_prompts", mode="full") == 3
        assert m.value("promptledger_prompts", mode="tracking") == 1
        report = (await client.get("/v1/analytics/prompts")).json()
        assert report["total_executions"] == len(rows)

    @staticmethod
    def label_of(rows: list[dict[str, Any]], prompt: str) -> dict[str, str]:
        (row,) = [e for e in rows if e["prompt"]["name"] == prompt]
        return dict(execution_key(row))

    async def test_queued_running_and_canceled(
        self, stalled: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        app, client = stalled
        await save(client, "q", "[[stub delay=1.5]] slow {{ n }}")
        created_before = datetime.now(UTC)
        ids = []
        for n in range(5):
            r = await client.post(SUBMIT, json=body("q", variables={"n": n}))
            assert r.status_code == 202  # committed and published; no worker takes it
            ids.append(r.json()["execution_id"])
        for execution_id in ids[:2]:
            r = await client.post(f"/v1/executions/{execution_id}:cancel")
            assert r.json()["status"] == "canceled"
        running = asyncio.create_task(client.post(RUN, json=body("q", variables={"n": 9})))
        try:
            deadline = time.monotonic() + 5
            while True:
                m = await scrape(app)
                if m["promptledger_executions_in_progress"].get(
                    labels(
                        status="running",
                        provider="openai",
                        model="gpt-4o-mini",
                        prompt_mode="full",
                        execution_mode="sync",
                    )
                ):
                    break
                assert time.monotonic() < deadline, "the sync run never showed as running"
                await asyncio.sleep(0.02)
            scraped_at = datetime.now(UTC)
        finally:
            assert (await running).json()["status"] == "succeeded"

        queued = labels(
            status="queued",
            provider="openai",
            model="gpt-4o-mini",
            prompt_mode="full",
            execution_mode="async",
        )
        canceled = queued - {("status", "queued")} | {("status", "canceled")}
        assert m["promptledger_executions_in_progress"][queued] == 3
        assert m["promptledger_executions_total"] == {canceled: 2}
        assert m.value("promptledger_queue_depth") == 3
        assert m.value("promptledger_queue_due") == 3
        age = m.value("promptledger_queue_oldest_age_seconds")
        assert 0 < age <= (scraped_at - created_before).total_seconds()

        after = await scrape(app)  # the sync run finished: it moved from running to the total
        assert sum(after["promptledger_executions_in_progress"].values()) == 3
        assert sum(after["promptledger_executions_total"].values()) == 3
        rows = await ledger_rows(client)
        assert Counter(e["status"] for e in rows) == {"queued": 3, "canceled": 2, "succeeded": 1}

    async def test_totals_are_backfilled_by_the_migration(
        self, app_and_client: tuple[FastAPI, httpx.AsyncClient], settings: Settings
    ) -> None:
        """Upgrading a ledger that already has executions counts them (0002 backfills)."""
        app, client = app_and_client
        await save(client, "b", "[[stub delay=0.11]] before the upgrade {{ n }}")
        for n in range(4):
            await client.post(RUN, json=body("b", variables={"n": n}))
        await client.post(RUN, json=body("b", model_name="gpt-4o", variables={"n": 9}))
        before = await scrape(app)
        assert sum(before["promptledger_executions_total"].values()) == 5

        config = migrate.alembic_config(settings.resolved_database_url)
        await asyncio.to_thread(command.downgrade, config, "0001")
        await asyncio.to_thread(migrate.upgrade, settings.resolved_database_url)

        after = await scrape(app)
        for name in (
            "promptledger_executions_total",
            "promptledger_execution_latency_seconds_bucket",
            "promptledger_execution_latency_seconds_sum",
            "promptledger_execution_prompt_tokens_bucket",
            "promptledger_execution_response_tokens_sum",
        ):
            assert after[name] == pytest.approx(before[name]), name


class TestLatencyBounds:
    @pytest.mark.parametrize("ms", [0, 1, 49, 50, 51, 99, 100, 249, 250, 251, 999, 1000, 10**6])
    def test_a_latency_is_never_counted_under_a_smaller_bound(self, ms: int) -> None:
        bounds_ms = [round(b * 1000) for b in LATENCY_BOUNDS_S]
        index = latency_bound_index(latency_bucket(ms))
        exact = next((i for i, b in enumerate(bounds_ms) if ms <= b), len(bounds_ms))
        assert index >= exact
        if ms < 100:
            assert index == exact  # exact buckets below 100 ms
        else:
            assert index <= exact + 1  # a straddling 1% bucket moves up one bound at most
            if index > exact:
                assert ms >= bounds_ms[exact] * 0.99


class TestHttpMetrics:
    async def test_counts_and_latencies_by_method_route_template_and_status(
        self, app_and_client: tuple[FastAPI, httpx.AsyncClient]
    ) -> None:
        app, client = app_and_client
        await save(client, "h", "hi {{ n }}")
        for n in range(3):
            assert (await client.post(RUN, json=body("h", variables={"n": n}))).status_code == 200
        ids = [(await client.post(RUN, json=body("h", variables={"n": 7}))).json()["id"]]
        for execution_id in ids * 4:
            await client.get(f"/v1/executions/{execution_id}")
        await client.get("/v1/executions/00000000-0000-0000-0000-000000000000")  # 404
        await client.get("/no/such/route")
        await client.get("/health", headers={"X-API-Key": ""})
        await client.request("BREW", "/health")
        anon = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )
        async with anon:
            assert (await anon.get("/v1/prompts")).status_code == 401
            big = b"x" * (8 * 1024 * 1024 + 1)
            assert (await anon.put("/v1/prompts/big", content=big)).status_code == 413

        m = await scrape(app)
        count = "promptledger_http_request_duration_seconds_count"

        def c(method: str, route: str, status: str) -> float:
            return m.value(count, method=method, route=route, status=status)

        assert c("PUT", "/v1/prompts/{name}", "201") == 1
        assert c("POST", "/v1/executions:run", "200") == 4
        assert c("GET", "/v1/executions/{execution_id}", "200") == 4
        assert c("GET", "/v1/executions/{execution_id}", "404") == 1
        assert c("GET", UNMATCHED_ROUTE, "404") == 1
        assert c("GET", "/health", "200") == 1
        assert c("OTHER", "/health", "405") == 1
        assert c("GET", "/v1/prompts", "401") == 1
        assert c("PUT", UNMATCHED_ROUTE, "413") == 1  # refused by the body cap before routing
        # nothing else: every request above is counted exactly once, under its template
        assert sum(m[count].values()) == 1 + 4 + 4 + 1 + 1 + 1 + 1 + 1 + 1
        for key, n in m[count].items():
            le_inf = key | {("le", "+Inf")}
            assert m["promptledger_http_request_duration_seconds_bucket"][le_inf] == n
            assert m["promptledger_http_request_duration_seconds_sum"][key] > 0

        again = await scrape(app)  # the first scrape is counted too
        assert again.value(count, method="GET", route="/metrics", status="200") == 1
