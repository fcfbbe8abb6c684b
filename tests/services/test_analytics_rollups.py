"""Analytics from rollups equal a brute-force computation over the same ledger rows."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.config import Settings
from prompt_ledger.db import ledger as ledger_statements
from prompt_ledger.db.session import Database
from prompt_ledger.db.tables import (
    FINAL_STATUSES,
    Execution,
    ExecutionMode,
    ExecutionStatus,
    Model,
    PromptMode,
)
from prompt_ledger.services import analytics, prompts
from prompt_ledger.services.analytics import bucket_floor, latency_bucket

T0 = datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
STATUSES = ["succeeded"] * 6 + ["failed"] * 2 + ["canceled", "queued", "running"]


class TestBuckets:
    @pytest.mark.parametrize("ms", [0, 1, 57, 99, 100, 101, 150, 999, 1000, 12_345, 600_000])
    def test_floor_is_within_one_percent_below(self, ms: int) -> None:
        floor = bucket_floor(latency_bucket(ms))
        assert floor <= ms
        assert (ms < 100 and floor == ms) or ms <= floor * 1.0101 + 1

    def test_buckets_are_monotonic(self) -> None:
        buckets = [latency_bucket(ms) for ms in range(0, 50_000)]
        assert buckets == sorted(buckets)


def nearest_rank_p95(values: list[int]) -> int | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[math.ceil(0.95 * len(ordered)) - 1]


@pytest.fixture
async def ledger(settings: Settings) -> AsyncIterator[tuple[AsyncSession, list[dict[str, object]]]]:
    """Three prompts (two modes) and 400 executions over five hours, with known numbers.

    Each finished row is inserted unfinished, then finished through the ledger's own
    transition (``db.ledger.finish``), which is what maintains the rollups."""
    db = Database(settings.resolved_database_url)
    rng = random.Random(7)
    rows: list[dict[str, object]] = []
    finishing: list[tuple[Execution, ExecutionStatus]] = []
    async with db.unit_of_work() as session:
        model = await session.scalar(sa.select(Model).where(Model.model_name == "gpt-4o-mini"))
        assert model is not None
        setup = [("A", PromptMode.FULL), ("B", PromptMode.FULL), ("C.t", PromptMode.TRACKING)]
        saved = {n: await prompts.save_version(session, n, "x", mode=m) for n, m in setup}
        for _ in range(400):
            name = rng.choice(["A", "A", "B", "C.t"])
            status = ExecutionStatus(rng.choice(STATUSES))
            finished = status in FINAL_STATUSES
            latency = (
                rng.choice([rng.randint(0, 99), rng.randint(100, 5000)])
                if finished and status != ExecutionStatus.CANCELED
                else None
            )
            created = T0 + timedelta(seconds=rng.uniform(0, 5 * 3600))
            row = Execution(
                id=uuid.uuid4(),
                prompt_id=saved[name].prompt.id,
                prompt_version_id=saved[name].version.id,
                model_id=model.id,
                execution_mode=ExecutionMode.ASYNC,
                status=status,
                rendered_prompt="x",
                latency_ms=latency,
                prompt_tokens=rng.randint(1, 50) if latency is not None else None,
                response_tokens=rng.randint(1, 50) if latency is not None else None,
                attempts=1,
                created_at=created,
                variables={},
                params={},
                params_dropped=[],
                metadata_={},
            )
            if finished:
                row.status = (
                    ExecutionStatus.QUEUED
                    if status == ExecutionStatus.CANCELED
                    else ExecutionStatus.RUNNING
                )
                finishing.append((row, status))
            session.add(row)
            rows.append(
                {
                    "name": name,
                    "mode": saved[name].prompt.mode,
                    "status": status.value,
                    "latency": latency,
                    "pt": row.prompt_tokens or 0,
                    "rt": row.response_tokens or 0,
                    "created": created,
                }
            )
    for row, status in finishing:
        from_status = row.status
        row.status = status
        written = await ledger_statements.finish(
            db,
            ledger_statements.Finish(
                execution_id=row.id,
                from_status=from_status,
                attempt=1 if from_status == ExecutionStatus.RUNNING else None,
                values={name: getattr(row, name) for name in ledger_statements.FINISH_ATTRIBUTES},
                delta=analytics.rollup_delta(row),
            ),
        )
        assert written
    async with db.snapshot() as session:
        yield session, rows
    await db.dispose()


def expected(
    rows: list[dict[str, object]],
    since: datetime | None,
    until: datetime | None,
    mode: PromptMode | None,
) -> dict[str, dict[str, object]]:
    out: dict[str, dict[str, object]] = {}
    for name in sorted({str(r["name"]) for r in rows}):
        mine = [
            r
            for r in rows
            if r["name"] == name
            and (since is None or r["created"] >= since)  # type: ignore[operator]
            and (until is None or r["created"] < until)  # type: ignore[operator]
            and (mode is None or r["mode"] == mode)
        ]
        if not mine:
            continue
        lat = [int(r["latency"]) for r in mine if r["latency"] is not None]  # type: ignore[call-overload]
        p95 = nearest_rank_p95(lat)
        out[name] = {
            "executions": len(mine),
            "succeeded": sum(r["status"] == "succeeded" for r in mine),
            "failed": sum(r["status"] == "failed" for r in mine),
            "avg": sum(lat) / len(lat) if lat else None,
            "p95": bucket_floor(latency_bucket(p95)) if p95 is not None else None,
            "pt": sum(int(r["pt"]) for r in mine),  # type: ignore[call-overload]
            "rt": sum(int(r["rt"]) for r in mine),  # type: ignore[call-overload]
        }
    return out


WINDOWS = [
    (None, None),
    (T0 + timedelta(hours=1), T0 + timedelta(hours=3)),  # whole hours only
    (T0 + timedelta(minutes=17), T0 + timedelta(hours=3, minutes=41)),  # partial edges
    (T0 + timedelta(hours=2, minutes=5), T0 + timedelta(hours=2, minutes=50)),  # inside one hour
    (T0 + timedelta(hours=1, minutes=30), None),
    (None, T0 + timedelta(hours=2, minutes=30)),
    (T0 + timedelta(hours=9), T0 + timedelta(hours=10)),  # empty
]


async def test_report_matches_brute_force_for_every_window_and_mode(
    ledger: tuple[AsyncSession, list[dict[str, object]]],
) -> None:
    session, rows = ledger
    for since, until in WINDOWS:
        for mode in (None, PromptMode.FULL, PromptMode.TRACKING):
            await check_report(session, rows, since, until, mode)


async def check_report(
    session: AsyncSession,
    rows: list[dict[str, object]],
    since: datetime | None,
    until: datetime | None,
    mode: PromptMode | None,
) -> None:
    await session.rollback()  # a fresh snapshot per report, as per request
    report = await analytics.prompt_report(session, mode=mode, since=since, until=until)
    want = expected(rows, since, until, mode)
    got = {
        p.name: {
            "executions": p.stats.executions,
            "succeeded": p.stats.succeeded,
            "failed": p.stats.failed,
            "avg": p.stats.avg_latency_ms,
            "p95": p.stats.p95_latency_ms,
            "pt": p.stats.prompt_tokens,
            "rt": p.stats.response_tokens,
        }
        for p in report.prompts
    }
    assert got.keys() == want.keys()
    for name in want:
        for key, value in want[name].items():
            if key == "avg" and value is not None:
                assert got[name][key] == pytest.approx(value)
            else:
                assert got[name][key] == value, (name, key)
    assert report.total_executions == sum(int(w["executions"]) for w in want.values())  # type: ignore[call-overload]
    order = [p.name for p in report.prompts]
    assert order == sorted(order, key=lambda n: (-int(want[n]["executions"]), n))  # type: ignore[call-overload]
    assert report.prompts_by_mode == {PromptMode.FULL: 2, PromptMode.TRACKING: 1}
    tracking_total = sum(int(w["executions"]) for n, w in want.items() if n == "C.t")  # type: ignore[call-overload]
    assert report.by_mode[PromptMode.TRACKING].executions == tracking_total


# --- the UI's series and activity (rollups only) -------------------------------------------


def finished_in(
    rows: list[dict[str, object]], names: set[str], start: datetime, end: datetime
) -> list[dict[str, object]]:
    return [
        r
        for r in rows
        if r["name"] in names
        and r["status"] in {s.value for s in FINAL_STATUSES}
        and start <= r["created"] < end  # type: ignore[operator]
    ]


async def test_hourly_series_matches_brute_force_per_hour(
    ledger: tuple[AsyncSession, list[dict[str, object]]],
) -> None:
    session, rows = ledger
    ids = {n: (await prompts.get_prompt(session, n)).id for n in ("A", "B", "C.t")}
    # a window with partial hours at both ends: points are whole hours, every one present
    since, until = T0 - timedelta(minutes=30), T0 + timedelta(hours=4, minutes=10)
    for names in ({"A", "B", "C.t"}, {"A"}, {"B", "C.t"}):
        prompt_ids = None if len(names) == 3 else [ids[n] for n in sorted(names)]
        series = await analytics.hourly_series(
            session, prompt_ids=prompt_ids, since=since, until=until
        )
        hours = [T0 - timedelta(hours=1) + timedelta(hours=h) for h in range(6)]
        assert [p.hour for p in series] == hours
        for point in series:
            mine = finished_in(rows, names, point.hour, point.hour + timedelta(hours=1))
            lat = [int(r["latency"]) for r in mine if r["latency"] is not None]  # type: ignore[call-overload]
            p95 = nearest_rank_p95(lat)
            assert point.stats.executions == len(mine)
            assert point.stats.failed == sum(r["status"] == "failed" for r in mine)
            assert point.stats.response_tokens == sum(int(r["rt"]) for r in mine)  # type: ignore[call-overload]
            assert point.stats.p95_latency_ms == (
                bucket_floor(latency_bucket(p95)) if p95 is not None else None
            )
        total = analytics.total_of(series)
        assert total.executions == len(
            finished_in(rows, names, hours[0], hours[-1] + timedelta(hours=1))
        )


async def test_hourly_series_of_an_empty_window_is_zeros(
    ledger: tuple[AsyncSession, list[dict[str, object]]],
) -> None:
    session, _ = ledger
    later = T0 + timedelta(days=3)
    series = await analytics.hourly_series(
        session, prompt_ids=None, since=later, until=later + timedelta(hours=2)
    )
    assert len(series) == 2
    assert all(p.stats.executions == 0 and p.stats.p95_latency_ms is None for p in series)


async def test_recent_activity_counts_recent_hours_and_the_last_run(
    ledger: tuple[AsyncSession, list[dict[str, object]]],
) -> None:
    session, rows = ledger
    ids = {n: (await prompts.get_prompt(session, n)).id for n in ("A", "B", "C.t")}
    now = T0 + timedelta(hours=4, minutes=30)
    activity = await analytics.recent_activity(session, list(ids.values()), hours=3, now=now)
    start = T0 + timedelta(hours=2)  # the current hour and the 2 before it
    for name, prompt_id in ids.items():
        mine = finished_in(rows, {name}, start, T0 + timedelta(days=1))
        assert activity[prompt_id].recent.executions == len(mine)
        assert activity[prompt_id].recent.failed == sum(r["status"] == "failed" for r in mine)
        newest = max(r["created"] for r in rows if r["name"] == name)  # type: ignore[type-var]
        assert activity[prompt_id].last_executed_at == newest
    assert await analytics.recent_activity(session, []) == {}
