"""bootstrap: the one place a Runtime is built from Settings and released."""

from __future__ import annotations

import uuid
from pathlib import Path

from prompt_ledger.bootstrap import build_runtime, close_runtime
from prompt_ledger.config import Settings
from prompt_ledger.domain import ProviderName
from prompt_ledger.providers.openai import OpenAIProvider
from prompt_ledger.workers.inprocess import InProcessWorker


def settings_in(tmp_path: Path) -> Settings:
    return Settings(_env_file=None, database_url=f"sqlite:///{tmp_path / 'pl.db'}")  # type: ignore[call-arg]


class ClosingDispatcher:
    """A dispatcher with resources of its own, as ``CeleryDispatcher`` has."""

    def __init__(self) -> None:
        self.closed = 0

    async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        raise AssertionError("nothing is published while building or closing")

    def close(self) -> None:
        self.closed += 1


class TestBuildRuntime:
    async def test_database_and_providers_come_from_the_settings(self, tmp_path: Path) -> None:
        settings = settings_in(tmp_path)
        dispatcher = ClosingDispatcher()

        runtime = build_runtime(settings, dispatcher=dispatcher)
        try:
            assert runtime.settings is settings
            assert runtime.dispatcher is dispatcher
            assert str(runtime.db.engine.url).endswith(str(tmp_path / "pl.db"))
            assert isinstance(runtime.providers[ProviderName.OPENAI], OpenAIProvider)
        finally:
            await close_runtime(runtime)

    async def test_the_in_process_worker_runs_on_the_runtime_it_belongs_to(
        self, tmp_path: Path
    ) -> None:
        worker = InProcessWorker()

        runtime = build_runtime(settings_in(tmp_path), dispatcher=worker)
        try:
            assert worker.runtime is runtime
        finally:
            await close_runtime(runtime)


class TestCloseRuntime:
    async def test_a_dispatcher_with_close_is_closed_once(self, tmp_path: Path) -> None:
        dispatcher = ClosingDispatcher()
        runtime = build_runtime(settings_in(tmp_path), dispatcher=dispatcher)

        await close_runtime(runtime)

        assert dispatcher.closed == 1

    async def test_the_in_process_worker_is_drained(self, tmp_path: Path) -> None:
        worker = InProcessWorker()
        runtime = build_runtime(settings_in(tmp_path), dispatcher=worker)
        # A retry scheduled for later: shutdown cancels it (the sweeper re-publishes the row).
        await worker.publish(uuid.uuid4(), delay_s=3600)

        await close_runtime(runtime, drain_s=1)

        assert not worker._timers
