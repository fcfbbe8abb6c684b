"""Default models (SPEC §3), inserted if missing: safe to run from many processes at once."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from prompt_ledger.db.tables import Model, ProviderName

# No pricing of their own: genai-prices' table knows these models and when their prices
# change (services/costs.py); an operator's PUT /v1/models pricing overrides it.
DEFAULT_MODELS: tuple[dict[str, object], ...] = (
    {"model_name": "gpt-4o-mini", "max_tokens": 16384},
    {"model_name": "gpt-4o", "max_tokens": 16384},
    {"model_name": "gpt-4-turbo", "max_tokens": 4096},
)


def seed_default_models(conn: sa.Connection) -> int:
    """Insert the default models that are missing; returns how many were added.

    Existing rows are left alone, so an operator's changes (is_active, limits) survive.
    """
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    rows = [
        {"provider": ProviderName.OPENAI, "supports_streaming": True, "is_active": True, **m}
        for m in DEFAULT_MODELS
    ]
    result = conn.execute(
        insert(Model)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["provider", "model_name"])
        .returning(Model.id)
    )
    return len(result.all())
