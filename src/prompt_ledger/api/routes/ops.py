"""Health routes: no API key, for load balancers and orchestrators."""

from __future__ import annotations

import asyncio

import redis
import redis.asyncio
import sqlalchemy as sa
from fastapi import APIRouter
from fastapi.responses import JSONResponse

from prompt_ledger.api.deps import AppState, StateDep
from prompt_ledger.api.errors import error_response
from prompt_ledger.errors import Unavailable
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
    """Readiness: the database (and Redis, when configured) answer within a short timeout."""
    checks = {"database": _database_up(state)}
    if state.settings.redis_url:
        checks["redis"] = _redis_up(state.settings.redis_url)
    results = dict(zip(checks, await asyncio.gather(*checks.values()), strict=True))
    status = {name: "up" if ok else "down" for name, ok in results.items()}
    if not all(results.values()):
        down = ", ".join(name for name, ok in results.items() if not ok)
        return error_response(
            Unavailable.status, Unavailable.code, f"not reachable: {down}", status
        )
    return JSONResponse({"status": "ready", **status})


async def _database_up(state: AppState) -> bool:
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await state.db.ping()
    except (OSError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
        log.warning("not_ready", dependency="database", error=type(exc).__name__)
        return False
    return True


async def _redis_up(url: str) -> bool:
    client = redis.asyncio.from_url(url, socket_connect_timeout=READY_TIMEOUT_S)
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await client.ping()
    except (OSError, TimeoutError, redis.RedisError) as exc:
        log.warning("not_ready", dependency="redis", error=type(exc).__name__)
        return False
    finally:
        await client.aclose()
    return True
