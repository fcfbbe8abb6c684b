"""Analytics route (SPEC §6), answered from rollups (see ``services.analytics``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from prompt_ledger.api.deps import SnapshotDep
from prompt_ledger.api.errors import error_responses
from prompt_ledger.db.tables import PromptMode
from prompt_ledger.schemas.tracking import (
    AnalyticsOut,
    GroupModelOut,
    GroupStatsOut,
    PromptStatsOut,
    StatsOut,
    stats_fields,
)
from prompt_ledger.services import analytics

router = APIRouter(prefix="/v1/analytics", tags=["analytics"])


@router.get("/prompts", response_model=AnalyticsOut, responses=error_responses())
async def prompt_analytics(
    session: SnapshotDep,
    mode: Literal["all", "full", "tracking"] = "all",
    since: datetime | None = None,
    until: datetime | None = None,
    group_by: Annotated[
        analytics.GroupBy | None,
        Query(description="break each prompt's row down by version, model or label (`groups`)"),
    ] = None,
) -> AnalyticsOut:
    """Executions, outcomes, latency, tokens and cost per mode and per prompt, in a window."""
    report = await analytics.prompt_report(
        session,
        mode=None if mode == "all" else PromptMode(mode),
        since=analytics.as_utc(since),
        until=analytics.as_utc(until),
        group_by=group_by,
    )
    return AnalyticsOut(
        mode=report.mode,
        total_executions=report.total_executions,
        prompts_by_mode={m.value: n for m, n in report.prompts_by_mode.items()},
        by_mode={m.value: StatsOut(**stats_fields(s)) for m, s in report.by_mode.items()},
        prompts=[
            PromptStatsOut(
                name=p.name,
                mode=p.mode,
                groups=None if p.groups is None else [_group(g) for g in p.groups],
                **stats_fields(p.stats),
            )
            for p in report.prompts
        ],
    )


def _group(group: analytics.GroupStats) -> GroupStatsOut:
    model = group.model
    return GroupStatsOut(
        version=group.version,
        label=group.label,
        model=GroupModelOut(provider=model.provider, name=model.model_name) if model else None,
        **stats_fields(group.stats),
    )
