"""Health routes: no API key, for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from prompt_ledger.api.deps import StateDep
from prompt_ledger.api.errors import error_response
from prompt_ledger.logging import get_logger

router = APIRouter(tags=["operations"])
log = get_logger(__name__)

READY_TIMEOUT_S = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    """Liveness: the process answers; no dependency is touched."""
    return {"status": "healthy"}


@router.get("/health/ready", responses={503: {"description": "a dependency is down"}})
async def ready(state: StateDep) -> JSONResponse:
    """Readiness: the database answers within a short timeout."""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S), state.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
        log.warning("not_ready", dependency="database", error=type(exc).__name__)
        return error_response(
            503, "unavailable", "the database is not reachable", {"database": "down"}
        )
    return JSONResponse({"status": "ready", "database": "up"})
