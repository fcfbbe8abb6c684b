"""Soak: ~10 minutes (``SOAK_SECONDS``) of mixed traffic against the production topology, with
random provider faults and one worker restart half-way, ending with the ledger invariant
check and the memory of the API and the workers before and after.

Only ``make reliability`` runs it (marker ``soak``, deselected by default in pyproject). All
traffic goes to loopback; every loop is bounded by the deadline.
"""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from tests.reliability.conftest import FULL
from tests.reliability.harness import (
    API_KEY,
    Process,
    RedisProcess,
    Stack,
    StackConfig,
    running_stack,
)
from tests.reliability.invariants import (
    JOB_PROMPT,
    JOB_TEMPLATE,
    Api,
    History,
    check_ledger,
    job,
    note,
)

pytestmark = [pytest.mark.soak, pytest.mark.postgres, pytest.mark.redis]

SOAK_SECONDS = float(os.environ.get("SOAK_SECONDS", "600"))
THREADS = int(os.environ.get("SOAK_THREADS", "6"))
PAUSE_S = 0.05  # between one thread's requests: ~100 requests/s in all
CONFIG = StackConfig(sweep_interval_s=1.0, recovery_timeout_s=6.0, provider_timeout_s=2.0)

# Provider behaviour drawn per execution: (weight, stub directives).
FAULTS = [
    (60, ""),
    (10, "[[stub delay=0.5]]"),
    (3, "[[stub delay=1.5]]"),
    (8, "[[stub status=503 fail=1]]"),
    (5, "[[stub status=429 retry_after=1 fail=2]]"),
    (4, "[[stub fault=reset fail=1]]"),
    (2, "[[stub fault=hang fail=1]]"),
    (3, "[[stub status=500 fail=9]]"),  # fails every attempt: ends failed
    (2, "[[stub status=400]]"),  # not retryable
    (3, "[[stub size=600000]]"),  # truncated
]


@dataclass
class Stats:
    kinds: Counter[str] = field(default_factory=Counter)
    latency: dict[str, list[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.kinds[kind] += 1
            self.latency.setdefault(kind, []).append(seconds)


def draw_faults(rng: random.Random) -> str:
    total = sum(w for w, _ in FAULTS)
    pick = rng.uniform(0, total)
    for weight, directive in FAULTS:
        pick -= weight
        if pick <= 0:
            return directive
    return ""


def traffic(api: Api, stats: Stats, deadline: float, seed: int) -> None:
    rng = random.Random(seed)
    recent: list[str] = []
    while time.monotonic() < deadline:
        choice = rng.random()
        started = time.monotonic()
        if choice < 0.45:
            kind = "submit"
            r = api.execute(JOB_PROMPT, job(draw_faults(rng)))
            if r is not None and r.status_code == 202:
                recent = [*recent[-20:], r.json()["execution_id"]]
        elif choice < 0.65:
            kind = "submit+retry (same key)"
            key, variables = uuid.uuid4().hex, job(draw_faults(rng))
            for _ in range(2):
                api.execute(JOB_PROMPT, variables, idempotency_key=key)
        elif choice < 0.85:
            kind = "run (sync)"
            faults = draw_faults(rng)
            key = uuid.uuid4().hex if rng.random() < 0.3 else None
            api.execute(JOB_PROMPT, job(faults), sync=True, idempotency_key=key)
        elif choice < 0.95 and recent:
            kind = "get"
            api.http.get(f"/v1/executions/{rng.choice(recent)}")
        else:
            kind = "list"
            api.http.get("/v1/executions", params={"limit": 20})
        stats.add(kind, time.monotonic() - started)
        time.sleep(PAUSE_S)


@pytest.fixture
def soak_stack(
    ledger_url: str, reliability_redis: RedisProcess, stub_process: str, tmp_path: Path
) -> Iterator[Stack]:
    if not FULL and "SOAK_SECONDS" not in os.environ:
        pytest.skip("the soak runs under `make reliability` (or with SOAK_SECONDS set)")
    if not reliability_redis.running:
        reliability_redis.start()
    reliability_redis.client(3).flushdb()
    with running_stack(
        tmp_path / "soak",
        ledger_url,
        reliability_redis.url(3),
        stub_process,
        config=CONFIG,
        workers=2,
    ) as stack:
        yield stack


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f} MiB"


def test_soak(soak_stack: Stack) -> None:
    history = History("test_soak")
    api = Api(soak_stack.base_url, API_KEY, history, timeout_s=30)
    api.save(JOB_PROMPT, JOB_TEMPLATE)
    stats = Stats()
    assert soak_stack.serve is not None
    serve = soak_stack.serve
    restarted, steady = soak_stack.live_workers

    started = time.monotonic()
    deadline = started + SOAK_SECONDS
    warm_up = min(20.0, SOAK_SECONDS / 10)
    rss: dict[str, list[tuple[float, int]]] = {}

    def sample(name: str, process: Process) -> None:
        if process.running:
            rss.setdefault(name, []).append((time.monotonic() - started, process.rss_kib()))

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        futures = [pool.submit(traffic, api, stats, deadline, n) for n in range(THREADS)]
        time.sleep(warm_up)
        before = {"api": serve.rss_kib(), "worker": steady.rss_kib()}
        half_way = started + SOAK_SECONDS / 2
        replacement: Process | None = None
        while time.monotonic() < deadline:
            for name, process in (("api", serve), ("worker (steady)", steady)):
                sample(name, process)
            if replacement is None and time.monotonic() >= half_way:
                replacement = soak_stack.start_worker()
                took = restarted.terminate()
                history.fault(f"worker restart half-way (SIGTERM, exited in {took:.1f}s)")
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        after = {"api": serve.rss_kib(), "worker": steady.rss_kib()}
        for future in futures:
            future.result(timeout=120)
    faulty = sum(
        weight for weight, directive in FAULTS if "fail" in directive or "status" in directive
    )
    history.fault(f"random provider faults (~{faulty}% of executions)")
    api.close()

    report = check_ledger(
        soak_stack.database_url,
        history,
        stub_url=soak_stack.stub_url,
        bound_s=CONFIG.settle_bound_s,
        max_attempts=CONFIG.max_attempts,
        logs=lambda: soak_stack.logs().values(),
        assert_ok=False,
    )
    elapsed = time.monotonic() - started
    lines = [
        "",
        f"soak: {elapsed:.0f}s, {THREADS} client threads, {len(history.calls)} requests "
        f"({len(history.calls) / elapsed:.0f}/s)",
        f"{'request kind':<26} {'count':>7} {'p50 ms':>8} {'p99 ms':>8}",
    ]
    for kind, count in sorted(stats.kinds.items()):
        values = sorted(stats.latency[kind])
        p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
        lines.append(
            f"{kind:<26} {count:>7} {statistics.median(values) * 1000:>8.0f} {p99 * 1000:>8.0f}"
        )
    lines += [
        f"executions {report.executions} ({report.statuses}), accepted {report.accepted}, "
        f"retried {report.retried}, recovered from a lost worker {report.worker_lost}, "
        f"provider calls {report.provider_calls}",
        f"lost {len(report.lost)}, duplicated {len(report.duplicated)}, stuck "
        f"{len(report.stuck)}, over-called {len(report.over_called)}, bad responses "
        f"{len(report.bad_responses)}, inconsistent {len(report.inconsistent)}; settled in "
        f"{report.settle_s:.1f}s",
        f"RSS api: {mib(before['api'])} -> {mib(after['api'])}; "
        f"steady worker: {mib(before['worker'])} -> {mib(after['worker'])}",
        "RSS timeline (s: api / worker): "
        + ", ".join(
            f"{t:.0f}: {a // 1024}/{w // 1024}"
            for (t, a), (_, w) in list(zip(rss["api"], rss["worker (steady)"], strict=False))[
                :: max(1, len(rss["api"]) // 12)
            ]
        ),
    ]
    note("\n".join(lines))
    assert report.ok, report.describe()
    assert report.accepted > SOAK_SECONDS  # at least ~1 accepted execution per second
    # Memory: a leak of even a few KiB per request would show over tens of thousands.
    assert after["api"] - before["api"] < 200 * 1024, "API RSS grew by more than 200 MiB"
    assert after["worker"] - before["worker"] < 200 * 1024, "worker RSS grew by >200 MiB"
