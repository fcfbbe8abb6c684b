"""``GET /metrics``: Prometheus text format, no API key (serve it on a private network only)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from prompt_ledger.api.deps import StateDep
from prompt_ledger.api.http_metrics import HttpMetrics
from prompt_ledger.services import metrics

router = APIRouter(tags=["operations"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
)
async def prometheus_metrics(request: Request, state: StateDep) -> Response:
    """Ledger metrics (every process's executions, from the database) and this process's
    HTTP metrics, in Prometheus text format."""
    http: HttpMetrics = request.app.state.http_metrics
    body = http.exposition() + await metrics.ledger_exposition(state.db)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
