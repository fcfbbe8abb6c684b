"""Analytics over the ledger, answered from hourly rollups (SPEC §6, analytics route).

Every execution that reaches a final status adds itself to ``execution_rollups`` and
``latency_rollups`` (per prompt and UTC hour of ``created_at``) in the same transaction, so a
query reads whole hours from the rollups, scans the ledger only for the partial hours at the
edges of its window, and counts the few queued/running rows from the status index. Cost
grows with prompts x hours, not with executions.

p95 is nearest-rank over a latency histogram: exact to the millisecond below 100 ms, and
1%-wide buckets above, reported as the bucket's lowest value (never more than 1% under the
exact figure).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db import repositories as repo
from prompt_ledger.db.ledger import RollupDelta
from prompt_ledger.db.tables import TOKEN_BUCKETS, Execution, ExecutionStatus, Model, PromptMode

EXACT_BELOW_MS = 100
_GROWTH = 1.01
_LOG_GROWTH = math.log(_GROWTH)
HOUR = timedelta(hours=1)


def latency_bucket(latency_ms: int) -> int:
    if latency_ms < EXACT_BELOW_MS:
        return max(latency_ms, 0)
    return EXACT_BELOW_MS + int(math.log(latency_ms / EXACT_BELOW_MS) / _LOG_GROWTH + 1e-9)


def bucket_floor(bucket: int) -> int:
    """The smallest latency (ms) that falls in ``bucket``."""
    if bucket < EXACT_BELOW_MS:
        return bucket
    guess = int(EXACT_BELOW_MS * _GROWTH ** (bucket - EXACT_BELOW_MS))
    while latency_bucket(guess) >= bucket and guess > EXACT_BELOW_MS:
        guess -= 1
    while latency_bucket(guess) < bucket:
        guess += 1
    return guess


def as_utc(moment: datetime | None) -> datetime | None:
    """Window bounds without a zone are read as UTC, the ledger's zone."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)


def floor_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def ceil_hour(moment: datetime) -> datetime:
    floor = floor_hour(moment)
    return floor if floor == moment else floor + HOUR


# --- writing ------------------------------------------------------------------------------


def rollup_delta(execution: Execution) -> RollupDelta:
    """What a finished execution adds to every rollup table (written with its final status,
    in the same statement or transaction: ``db.ledger.finish``)."""
    latency = execution.latency_ms
    return RollupDelta(
        prompt_id=execution.prompt_id,
        hour=floor_hour(execution.created_at),
        counters={
            "executions": 1,
            "succeeded": int(execution.status == ExecutionStatus.SUCCEEDED),
            "failed": int(execution.status == ExecutionStatus.FAILED),
            "latency_count": int(latency is not None),
            "latency_sum": latency or 0,
            "prompt_tokens": execution.prompt_tokens or 0,
            "response_tokens": execution.response_tokens or 0,
        },
        sums={"cost_usd": execution.cost_usd or Decimal(0)},
        latency_bucket=latency_bucket(latency) if latency is not None else None,
        model_id=execution.model_id,
        execution_mode=execution.execution_mode,
        status=execution.status,
        totals=total_counters(execution),
    )


def total_counters(execution: Execution) -> dict[str, int]:
    """One finished execution as ``execution_totals`` counters (cumulative token buckets)."""
    latency = execution.latency_ms
    counters = {
        "executions": 1,
        "latency_count": int(latency is not None),
        "latency_sum": latency or 0,
    }
    for kind, tokens in (
        ("prompt", execution.prompt_tokens),
        ("response", execution.response_tokens),
    ):
        counters[f"{kind}_tokens_count"] = int(tokens is not None)
        counters[f"{kind}_tokens_sum"] = tokens or 0
        for bound in TOKEN_BUCKETS:
            counters[f"{kind}_tokens_le_{bound}"] = int(tokens is not None and tokens <= bound)
    return counters


# --- reading ------------------------------------------------------------------------------


@dataclass(slots=True)
class Stats:
    executions: int = 0
    succeeded: int = 0
    failed: int = 0
    latency_count: int = 0
    latency_sum: int = 0
    prompt_tokens: int = 0
    response_tokens: int = 0
    cost_usd: Decimal = Decimal(0)  # the sum of the known costs
    histogram: Counter[int] = field(default_factory=Counter)

    def add_counters(self, counters: Iterable[int], cost_usd: Decimal = Decimal(0)) -> None:
        n, ok, bad, lat_n, lat_sum, p_tok, r_tok = counters
        self.cost_usd += cost_usd
        self.executions += n
        self.succeeded += ok
        self.failed += bad
        self.latency_count += lat_n
        self.latency_sum += lat_sum
        self.prompt_tokens += p_tok
        self.response_tokens += r_tok

    def merge(self, other: Stats) -> None:
        self.add_counters(
            (
                other.executions,
                other.succeeded,
                other.failed,
                other.latency_count,
                other.latency_sum,
                other.prompt_tokens,
                other.response_tokens,
            ),
            other.cost_usd,
        )
        self.histogram.update(other.histogram)

    @property
    def avg_latency_ms(self) -> float | None:
        return self.latency_sum / self.latency_count if self.latency_count else None

    @property
    def p95_latency_ms(self) -> int | None:
        """Nearest rank: the smallest value with at least 95% of values at or below it."""
        total = sum(self.histogram.values())
        if not total:
            return None
        rank = math.ceil(0.95 * total)
        seen = 0
        for bucket in sorted(self.histogram):
            seen += self.histogram[bucket]
            if seen >= rank:
                return bucket_floor(bucket)
        raise AssertionError("unreachable: ranks are within the total")


GroupBy = Literal["version", "model", "label"]
"""What ``group_by`` breaks a prompt's row down by (``repositories.EXECUTION_GROUPS``)."""


@dataclass(frozen=True, slots=True)
class GroupStats:
    """One part of a prompt's executions: the version run, the model run on, or the label
    run by (``label`` None under ``group_by="label"``: the runs that named no label)."""

    stats: Stats
    version: int | None = None
    model: Model | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class PromptStats:
    name: str
    mode: PromptMode
    stats: Stats
    groups: list[GroupStats] | None = None  # with ``group_by``


@dataclass(frozen=True, slots=True)
class Report:
    mode: str
    total_executions: int
    prompts_by_mode: Mapping[PromptMode, int]
    by_mode: Mapping[PromptMode, Stats]
    prompts: list[PromptStats]


Bounds = tuple[datetime | None, datetime | None]


def _split_window(
    since: datetime | None, until: datetime | None
) -> tuple[Bounds | None, list[tuple[datetime, datetime]]]:
    """Whole hours (read from rollups; None bounds are open) and partial hours (scanned)."""
    start = ceil_hour(since) if since else None
    end = floor_hour(until) if until else None
    if since and until and start and end and start >= end:
        return None, [(since, until)] if since < until else []
    edges = []
    if since and start and since < start:
        edges.append((since, start))
    if until and end and end < until:
        edges.append((end, until))
    return (start, end), edges


async def prompt_report(
    session: AsyncSession,
    *,
    mode: PromptMode | None,
    since: datetime | None,
    until: datetime | None,
    group_by: GroupBy | None = None,
) -> Report:
    """Executions per prompt and per mode, created in [since, until) (all time if open);
    with ``group_by``, each prompt's row also broken down by version or model.

    Takes a ``Database.snapshot()`` session: an execution finishing meanwhile is counted
    once, either as unfinished or in the rollups.
    """
    per_prompt: defaultdict[int, Stats] = defaultdict(Stats)
    whole_hours, edges = _split_window(since, until)
    if whole_hours is not None:
        start, end = whole_hours
        for prompt_id, counters, cost in await repo.sum_rollups(session, start=start, end=end):
            per_prompt[prompt_id].add_counters(counters, cost)
        for prompt_id, bucket, count in await repo.sum_latency_rollups(
            session, start=start, end=end
        ):
            per_prompt[prompt_id].histogram[bucket] += count
    for start, end in edges:
        await _scan_ledger(session, per_prompt, start=start, end=end, group_by=None)
    for (prompt_id,), count in (
        await repo.count_unfinished(session, start=since, end=until)
    ).items():
        per_prompt[prompt_id].executions += count
    groups = await _groups(session, since, until, group_by) if group_by else {}

    prompts = await repo.get_prompts_by_id(session, list(per_prompt))
    by_mode = {PromptMode.FULL: Stats(), PromptMode.TRACKING: Stats()}
    rows: list[PromptStats] = []
    for prompt_id, stats in per_prompt.items():
        prompt = prompts[prompt_id]
        if stats.executions == 0 or (mode is not None and prompt.mode != mode):
            continue
        rows.append(PromptStats(prompt.name, prompt.mode, stats, groups.get(prompt_id)))
        by_mode[prompt.mode].merge(stats)
    rows.sort(key=lambda row: (-row.stats.executions, row.name))
    counts = await repo.count_prompts_by_mode(session)
    return Report(
        mode=mode.value if mode else "all",
        total_executions=sum(row.stats.executions for row in rows),
        prompts_by_mode={m: counts.get(m, 0) for m in PromptMode},
        by_mode=by_mode,
        prompts=rows,
    )


async def _scan_ledger(
    session: AsyncSession,
    into: defaultdict[Any, Stats],
    *,
    start: datetime | None,
    end: datetime | None,
    group_by: GroupBy | None,
) -> None:
    """Add the finished executions created in [start, end) to ``into``, read from the
    ledger itself: by prompt id, or by (prompt id, group) with ``group_by``."""

    def key(k: tuple[Any, ...]) -> Any:
        return k if group_by else k[0]

    for k, counters, cost in await repo.sum_finished_between(
        session, start=start, end=end, group_by=group_by
    ):
        into[key(k)].add_counters(counters, cost)
    for k, latency, count in await repo.latencies_between(
        session, start=start, end=end, group_by=group_by
    ):
        into[key(k)].histogram[latency_bucket(latency)] += count


async def _groups(
    session: AsyncSession, since: datetime | None, until: datetime | None, group_by: GroupBy
) -> dict[int, list[GroupStats]]:
    """Per prompt id: its executions in [since, until) per version, model or label, most
    first.

    The rollups are kept per prompt only, so a breakdown scans the window's executions
    (through the ``created_at`` index): narrow windows are cheap, an all-time breakdown of
    a large ledger is not (see docs/decisions.md).
    """
    per_group: defaultdict[tuple[int, Any], Stats] = defaultdict(Stats)
    await _scan_ledger(session, per_group, start=since, end=until, group_by=group_by)
    unfinished = await repo.count_unfinished(session, start=since, end=until, group_by=group_by)
    for (prompt_id, value), count in unfinished.items():
        per_group[(prompt_id, value)].executions += count
    values = [value for _, value in per_group]
    if group_by == "version":
        versions = await repo.get_versions_by_id(session, values)
    elif group_by == "model":
        models = await repo.get_models_by_id(session, values)
    groups: defaultdict[int, list[GroupStats]] = defaultdict(list)
    for (prompt_id, value), stats in per_group.items():
        if group_by == "version":
            group = GroupStats(stats, version=versions[value].version_number)
        elif group_by == "model":
            group = GroupStats(stats, model=models[value])
        else:  # the label is its own value
            group = GroupStats(stats, label=value)
        groups[prompt_id].append(group)
    for parts in groups.values():
        parts.sort(key=lambda g: (-g.stats.executions, _group_order(g)))
    return dict(groups)


def _group_order(group: GroupStats) -> tuple[Any, ...]:
    if group.model is not None:
        return (group.model.provider.value, group.model.model_name)
    if group.version is None:  # by label: named labels by name, then the runs without one
        return (group.label is None, group.label or "")
    return (-(group.version or 0),)  # newest version first among equals


# --- time series and recent activity (the web UI's charts and lists) ----------------------


@dataclass(frozen=True, slots=True)
class HourStats:
    hour: datetime
    stats: Stats


async def hourly_series(
    session: AsyncSession,
    *,
    prompt_ids: Sequence[int] | None,
    since: datetime,
    until: datetime,
) -> list[HourStats]:
    """Finished executions per UTC hour, every hour from ``since``'s to ``until``'s (zeros
    included, so a chart's axis is continuous), for the given prompts or all of them.

    Reads only the rollups: a point is a whole hour, the current one included (rollups are
    written as executions finish); queued and running executions are not in it yet.
    """
    start, end = floor_hour(since), ceil_hour(until)
    points: dict[datetime, Stats] = {}
    hour = start
    while hour < end:
        points[hour] = Stats()
        hour += HOUR
    for at, counters, cost in await repo.sum_rollups_by_hour(
        session, start=start, end=end, prompt_ids=prompt_ids
    ):
        points[at].add_counters(counters, cost)
    for at, bucket, count in await repo.sum_latency_rollups_by_hour(
        session, start=start, end=end, prompt_ids=prompt_ids
    ):
        points[at].histogram[bucket] += count
    return [HourStats(at, stats) for at, stats in points.items()]


def total_of(series: Iterable[HourStats]) -> Stats:
    total = Stats()
    for point in series:
        total.merge(point.stats)
    return total


@dataclass(frozen=True, slots=True)
class Activity:
    recent: Stats  # finished executions in the recent hours (``recent_activity``)
    last_executed_at: datetime | None


async def recent_activity(
    session: AsyncSession,
    prompt_ids: Sequence[int],
    *,
    hours: int = 24,
    now: datetime | None = None,
) -> dict[int, Activity]:
    """Per prompt: finished executions in the current UTC hour and the ``hours - 1`` before
    it (rollups, so whole hours), and when it last ran (one index seek per prompt)."""
    start = floor_hour(now or datetime.now(UTC)) - (hours - 1) * HOUR
    recent: defaultdict[int, Stats] = defaultdict(Stats)
    for prompt_id, counters in await repo.sum_rollups_of_prompts(
        session, prompt_ids=prompt_ids, start=start
    ):
        recent[prompt_id].add_counters(counters)
    last = await repo.last_execution_times(session, prompt_ids)
    return {p: Activity(recent[p], last.get(p)) for p in prompt_ids}
