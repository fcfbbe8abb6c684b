"""Idempotency-Key rules (SPEC §6), decided in one place.

The key is stored on the execution row under a unique constraint, so the database settles
races between replicas; this module only says what a request carrying a known key gets.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from prompt_ledger.db.tables import Execution, ExecutionStatus
from prompt_ledger.errors import BadRequest, IdempotencyKeyInUse, IdempotencyKeyReused

_KEY = re.compile(r"[\x20-\x7e]{1,255}")


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    key: str
    # sha256 of method, path and the canonical JSON body: equal requests, equal fingerprints.
    fingerprint: str


def parse_key(
    raw: str | None, *, method: str, path: str, body: dict[str, Any]
) -> IdempotencyKey | None:
    """Validate the header and fingerprint the request; None when no key was sent."""
    if raw is None:
        return None
    if not _KEY.fullmatch(raw):
        raise BadRequest(
            "Idempotency-Key must be 1-255 printable ASCII characters",
            details={"header": "Idempotency-Key"},
        )
    canonical = json.dumps(
        [method.upper(), path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return IdempotencyKey(raw, hashlib.sha256(canonical.encode()).hexdigest())


def check_replay(existing: Execution, request: IdempotencyKey, *, sync: bool) -> None:
    """Allow a replay of ``existing``, or raise why not.

    Raises:
        IdempotencyKeyReused: the key came with another body or on another route.
        IdempotencyKeyInUse: a sync request with this key is still running.
    """
    if existing.idempotency_fingerprint != request.fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request (body or route); "
            "use a new key for a new request",
            details={"idempotency_key": request.key},
        )
    if sync and existing.status in (ExecutionStatus.QUEUED, ExecutionStatus.RUNNING):
        raise IdempotencyKeyInUse(
            "the request with this Idempotency-Key is still running; retry when it has finished",
            details={"idempotency_key": request.key, "execution_id": str(existing.id)},
        )
