"""The ledger's Prometheus metrics, read from the database at scrape time (SPEC §6).

Every number here comes from the database, not from process memory, so it covers every
execution whichever process (API replica, worker) ran it, and every replica reports the same
figures (aggregate them across instances with ``max``, not ``sum``):

* finished executions: the all-time ``execution_totals`` rows (one per prompt, model,
  execution mode and final status, maintained as executions finish);
* queued and running executions: counted from the status index;
* latency: ``latency_totals`` (the analytics histogram) mapped onto fixed ``le`` bounds;
* tokens: the cumulative token buckets of ``execution_totals``.

A scrape costs a handful of small grouped queries in one snapshot; none grows with the number
of executions (except the queued/running count, which grows with the backlog).
"""

from __future__ import annotations

import asyncio
import functools
import time
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db import repositories as repo
from prompt_ledger.db.session import Database
from prompt_ledger.db.tables import (
    TOKEN_BUCKETS,
    TOKEN_KINDS,
    ExecutionMode,
    ExecutionStatus,
    PromptMode,
    ProviderName,
    utcnow,
)
from prompt_ledger.logging import get_logger
from prompt_ledger.services.analytics import bucket_floor

log = get_logger(__name__)

SCRAPE_TIMEOUT_S = 5.0
# Execution latency boundaries (seconds): provider calls take from tens of ms to minutes.
LATENCY_BOUNDS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_LATENCY_BOUNDS_MS = tuple(round(bound * 1000) for bound in LATENCY_BOUNDS_S)

EXECUTION_LABELS = ("status", "provider", "model", "prompt_mode", "execution_mode")
TOKEN_LABELS = ("provider", "model", "prompt_mode")
FinishedRow = tuple[PromptMode, ProviderName, str, ExecutionMode, ExecutionStatus, dict[str, int]]
UnfinishedRow = tuple[PromptMode, ProviderName, str, ExecutionMode, ExecutionStatus, int]


@functools.lru_cache(maxsize=8192)
def latency_bound_index(bucket: int) -> int:
    """Which ``le`` bound an analytics latency bucket is counted under.

    The first bound at or above the bucket's largest latency, so a count under ``le=L`` never
    includes a latency above L. Buckets are exact below 100 ms; above, a 1%-wide bucket that
    straddles a bound is counted under the next one. ``len(LATENCY_BOUNDS_S)`` means +Inf.
    """
    largest_ms = bucket_floor(bucket + 1) - 1
    return bisect_left(_LATENCY_BOUNDS_MS, largest_ms)


@dataclass(frozen=True, slots=True)
class LedgerSnapshot:
    """What one scrape read, in one database snapshot."""

    finished: Sequence[FinishedRow]
    latency_buckets: Sequence[tuple[PromptMode, int, int]]
    unfinished: Sequence[UnfinishedRow]
    queued: int
    queued_due: int
    oldest_due_age_s: float
    prompts_by_mode: Mapping[PromptMode, int] = field(default_factory=dict)


async def read_ledger(session: AsyncSession) -> LedgerSnapshot:
    """Read every ledger figure /metrics shows (a few small grouped queries), in a
    ``Database.snapshot()`` session: an execution finishing meanwhile is counted once,
    either as running or in the totals (both change in the statement that finishes it)."""
    now = utcnow()
    finished = await repo.sum_execution_totals_by_labels(session)
    latency = await repo.sum_latency_totals_by_prompt_mode(session)
    unfinished = await repo.count_unfinished_by_labels(session)
    queued, due, oldest = await repo.get_queue_summary(session, now=now)
    prompts_by_mode = await repo.count_prompts_by_mode(session)
    return LedgerSnapshot(
        finished=finished,
        latency_buckets=latency,
        unfinished=unfinished,
        queued=queued,
        queued_due=due,
        oldest_due_age_s=max((now - oldest).total_seconds(), 0.0) if oldest else 0.0,
        prompts_by_mode=prompts_by_mode,
    )


async def ledger_exposition(db: Database, *, timeout_s: float = SCRAPE_TIMEOUT_S) -> bytes:
    """The ledger metrics in Prometheus text format.

    A database that does not answer within ``timeout_s`` gives ``promptledger_ledger_up 0``
    (and no ledger series) rather than a failed scrape, so the HTTP metrics still arrive.
    """
    started = time.perf_counter()
    snapshot: LedgerSnapshot | None
    try:
        async with asyncio.timeout(timeout_s), db.snapshot() as session:
            snapshot = await read_ledger(session)
    except (OSError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
        log.warning("metrics_ledger_unavailable", error=type(exc).__name__)
        snapshot = None
    registry = CollectorRegistry(auto_describe=False)
    registry.register(LedgerCollector(snapshot, time.perf_counter() - started))
    return generate_latest(registry)


class LedgerCollector(Collector):
    """A custom collector over one snapshot (built per scrape, never kept)."""

    def __init__(self, snapshot: LedgerSnapshot | None, read_s: float) -> None:
        self.snapshot = snapshot
        self.read_s = read_s

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily(
            "promptledger_ledger_up", "1 if the ledger database answered this scrape, else 0"
        )
        up.add_metric([], 1 if self.snapshot is not None else 0)
        yield up
        took = GaugeMetricFamily(
            "promptledger_ledger_scrape_duration_seconds",
            "Time this scrape spent reading the ledger database",
        )
        took.add_metric([], self.read_s)
        yield took
        if self.snapshot is not None:
            yield from ledger_families(self.snapshot)


def ledger_families(snapshot: LedgerSnapshot) -> Iterator[Metric]:
    finished = CounterMetricFamily(
        "promptledger_executions",
        "Finished executions (succeeded, failed, canceled), all time, every process",
        labels=EXECUTION_LABELS,
    )
    for mode, provider, model, execution_mode, status, counters in snapshot.finished:
        finished.add_metric(
            [status.value, provider.value, model, mode.value, execution_mode.value],
            counters["executions"],
        )
    yield finished

    in_progress = GaugeMetricFamily(
        "promptledger_executions_in_progress",
        "Executions queued or running now (with the finished ones: every row of the ledger)",
        labels=EXECUTION_LABELS,
    )
    for mode, provider, model, execution_mode, status, count in snapshot.unfinished:
        in_progress.add_metric(
            [status.value, provider.value, model, mode.value, execution_mode.value], count
        )
    yield in_progress

    yield _latency_histogram(snapshot)
    yield from _token_histograms(snapshot.finished)

    depth = GaugeMetricFamily(
        "promptledger_queue_depth",
        "Queued executions, including those waiting out a retry back-off",
    )
    depth.add_metric([], snapshot.queued)
    yield depth
    due = GaugeMetricFamily(
        "promptledger_queue_due", "Queued executions that are due to run now (no back-off left)"
    )
    due.add_metric([], snapshot.queued_due)
    yield due
    oldest = GaugeMetricFamily(
        "promptledger_queue_oldest_age_seconds",
        "How long the longest-waiting due execution has been due (0 when none is)",
    )
    oldest.add_metric([], snapshot.oldest_due_age_s)
    yield oldest

    prompts = GaugeMetricFamily("promptledger_prompts", "Prompts by mode", labels=["mode"])
    for mode in PromptMode:
        prompts.add_metric([mode.value], snapshot.prompts_by_mode.get(mode, 0))
    yield prompts


def _latency_histogram(snapshot: LedgerSnapshot) -> HistogramMetricFamily:
    per_bound: defaultdict[PromptMode, list[int]] = defaultdict(
        lambda: [0] * (len(LATENCY_BOUNDS_S) + 1)
    )
    for mode, bucket, count in snapshot.latency_buckets:
        per_bound[mode][latency_bound_index(bucket)] += count
    sums: defaultdict[PromptMode, int] = defaultdict(int)
    for mode, *_, counters in snapshot.finished:
        sums[mode] += counters["latency_sum"]
    family = HistogramMetricFamily(
        "promptledger_execution_latency_seconds",
        "Provider call latency of finished executions, all time, every process",
        labels=["prompt_mode"],
    )
    for mode in PromptMode:
        counts = per_bound[mode]
        bounds = [_le(bound) for bound in LATENCY_BOUNDS_S] + ["+Inf"]
        cumulative, buckets = 0, []
        for bound, count in zip(bounds, counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric([mode.value], buckets, sum_value=sums[mode] / 1000)
    return family


def _token_histograms(finished: Sequence[FinishedRow]) -> Iterator[HistogramMetricFamily]:
    merged: defaultdict[tuple[str, str, str], defaultdict[str, int]] = defaultdict(
        lambda: defaultdict(int)
    )
    for mode, provider, model, _, _, counters in finished:
        totals = merged[(provider.value, model, mode.value)]
        for name, value in counters.items():
            totals[name] += value
    for kind in TOKEN_KINDS:
        family = HistogramMetricFamily(
            f"promptledger_execution_{kind}_tokens",
            f"{kind.capitalize()} tokens per finished execution that reported them",
            labels=TOKEN_LABELS,
        )
        for labels, totals in merged.items():
            buckets = [(_le(b), totals[f"{kind}_tokens_le_{b}"]) for b in TOKEN_BUCKETS]
            buckets.append(("+Inf", totals[f"{kind}_tokens_count"]))
            family.add_metric(list(labels), buckets, sum_value=totals[f"{kind}_tokens_sum"])
        yield family


def _le(bound: float) -> str:
    """A bound as Prometheus clients write it (``1.0``, ``0.25``)."""
    return repr(float(bound))
