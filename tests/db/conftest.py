"""A ``Database`` on each backend and driver, on an empty ledger, left empty afterwards."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from tests.conftest import clean_database

from prompt_ledger.db.session import Database


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Database]:
    clean_database(db_url)
    database = Database(db_url, pool_size=4)
    yield database
    await database.dispose()
    clean_database(db_url)  # the other tests expect an empty ledger
