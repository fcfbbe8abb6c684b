"""Analytics route (SPEC §6), answered from rollups (see ``services.analytics``)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from fastapi import APIRouter

from prompt_ledger.api.deps import SnapshotDep
from prompt_ledger.api.errors import error_responses
from prompt_ledger.db.tables import PromptMode
from prompt_ledger.schemas.tracking import AnalyticsOut, PromptStatsOut, StatsOut, stats_fields
from prompt_ledger.services import analytics

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])


@router.get("/prompts", response_model=AnalyticsOut, responses=error_responses())
async def prompt_analytics(
    session: SnapshotDep,
    mode: Literal["all", "full", "tracking"] = "all",
    since: datetime | None = None,
    until: datetime | None = None,
) -> AnalyticsOut:
    """Executions, outcomes, latency and tokens per mode and per prompt, in a time window."""
    report = await analytics.prompt_report(
        session,
        mode=None if mode == "all" else PromptMode(mode),
        since=analytics.as_utc(since),
        until=analytics.as_utc(until),
    )
    return AnalyticsOut(
        mode=report.mode,
        total_executions=report.total_executions,
        prompts_by_mode={m.value: n for m, n in report.prompts_by_mode.items()},
        by_mode={m.value: StatsOut(**stats_fields(s)) for m, s in report.by_mode.items()},
        prompts=[
            PromptStatsOut(name=p.name, mode=p.mode, **stats_fields(p.stats))
            for p in report.prompts
        ],
    )
