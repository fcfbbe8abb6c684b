"""Names and limits every layer shares (api, services, db, schemas, providers).

It exists so that no layer reaches into another for its vocabulary: it imports nothing of ours.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from collections.abc import Sequence
from typing import Protocol, TypeVar

# Versions, token counts and other counters are INTEGER columns.
MAX_INT32 = 2**31 - 1


class ProviderName(enum.StrEnum):
    OPENAI = "openai"


# --- traffic splits (SPEC §9.2): the server picks a run's variant, the client its cached one -

BUCKETS = 100


class SplitPart(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def weight(self) -> int: ...


P = TypeVar("P", bound=SplitPart)


def subject_bucket(name: str, label: str, subject: str) -> int:
    """SPEC §9.2: the first 8 bytes, big-endian, of sha256(name\nlabel\nsubject), mod 100."""
    digest = hashlib.sha256(f"{name}\n{label}\n{subject}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def entry_for_bucket(split: Sequence[P], bucket: int) -> P:
    """The entries own consecutive bucket ranges in their listed order."""
    upper = 0
    for entry in split:
        upper += entry.weight
        if bucket < upper:
            return entry
    raise AssertionError(f"split weights sum to {upper}, not {BUCKETS}")


def choose_variant(name: str, label: str, split: Sequence[P], subject: str | None) -> P:
    """A split's entry for one use: by ``subject`` (deterministic), else at random."""
    bucket = (
        subject_bucket(name, label, subject) if subject is not None else secrets.randbelow(BUCKETS)
    )
    return entry_for_bucket(split, bucket)
