"""Names and limits every layer shares (api, services, db, schemas, providers).

It exists so that no layer reaches into another for its vocabulary: it imports nothing of ours.
"""

from __future__ import annotations

import enum

# Versions, token counts and other counters are INTEGER columns.
MAX_INT32 = 2**31 - 1


class ProviderName(enum.StrEnum):
    OPENAI = "openai"
