"""Request dependencies: the unit of work and the API key check."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.config import Settings
from prompt_ledger.db.session import Database
from prompt_ledger.errors import Unauthorized
from prompt_ledger.services.executions import Runtime


@dataclass(slots=True)
class AppState:
    """What a request needs from the process: built once in ``create_app``."""

    settings: Settings
    db: Database
    # sha256 digests of the accepted keys: comparing equal-length digests leaks neither
    # the key nor its length through timing.
    api_key_digests: tuple[bytes, ...]
    runtime: Runtime


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8")).digest()


def key_digests(keys: list[str]) -> tuple[bytes, ...]:
    return tuple(_digest(k) for k in keys)


# Plain (non-I/O) dependencies are ``async def`` on purpose: FastAPI runs a ``def`` dependency
# in its thread pool, which cost two thread hops per request on the hot path.
async def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.promptledger
    return state


StateDep = Annotated[AppState, Depends(get_state)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False)
# The same keys as ``Authorization: Bearer <key>``, which is how the OpenAI SDKs send
# ``api_key`` (SPEC §10.2): they work against /v1/models and the gateway routes unchanged.
_bearer = HTTPBearer(auto_error=False, description="a PromptLedger API key as a bearer token")


async def require_api_key(
    state: StateDep,
    api_key: Annotated[str | None, Security(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> None:
    """``X-API-Key`` or, when that header is absent, ``Authorization: Bearer``."""
    if not api_key and bearer is not None:
        api_key = bearer.credentials
    if not api_key:
        raise Unauthorized("missing X-API-Key header (or Authorization: Bearer <key>)")
    if accepted_key_digest(state, api_key) is None:
        raise Unauthorized("invalid API key")


def accepted_key_digest(state: AppState, api_key: str) -> bytes | None:
    """The digest of ``api_key`` if it is an accepted key, else None.

    The one key check: the API's header and the UI's sign-in form both go through it.
    """
    offered = _digest(api_key)
    # Compare against every key (no early exit), so timing does not tell which matched.
    matched = False
    for digest in state.api_key_digests:
        matched |= hmac.compare_digest(offered, digest)
    return offered if matched else None


async def get_session(state: StateDep) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed before the response is sent, or rolled back."""
    async with state.db.unit_of_work() as session:
        yield session


# scope="function": the commit happens before the response goes out, so a failed commit
# is the client's error response rather than a lost write after a 2xx.
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


async def get_snapshot(state: StateDep) -> AsyncIterator[AsyncSession]:
    """A read-only session whose queries all see one snapshot (reports over several tables)."""
    async with state.db.snapshot() as session:
        yield session


SnapshotDep = Annotated[AsyncSession, Depends(get_snapshot, scope="function")]


async def get_runtime(state: StateDep) -> Runtime:
    return state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
