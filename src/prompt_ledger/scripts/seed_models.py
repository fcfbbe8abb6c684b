"""``python -m prompt_ledger.scripts.seed_models``: add the default models if missing."""

from __future__ import annotations

from prompt_ledger.config import get_settings
from prompt_ledger.db.seed import seed_default_models
from prompt_ledger.db.session import create_sync_engine


def seed(url: str) -> int:
    engine = create_sync_engine(url)
    try:
        with engine.begin() as conn:
            return seed_default_models(conn)
    finally:
        engine.dispose()


def main() -> None:
    added = seed(get_settings().resolved_database_url)
    print(f"models seeded: {added} added")


if __name__ == "__main__":
    main()
