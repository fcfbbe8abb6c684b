"""The embedded worker: runs queued executions inside the ``serve`` process (no Redis).

Each published id becomes an asyncio task, bounded by a semaphore, calling the same
``services.executions.execute_queued`` as Celery does. The sweeper loop (both modes) runs
here too. Nothing is kept only in memory: every id is a committed row, so a restart loses
nothing; the sweeper re-publishes what was in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from prompt_ledger.logging import get_logger
from prompt_ledger.services import executions
from prompt_ledger.services.executions import Runtime

log = get_logger(__name__)


class InProcessWorker:
    """A Dispatcher that executes in this process's event loop."""

    def __init__(self, *, max_in_flight: int = 1000) -> None:
        self.runtime: Runtime | None = None
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self._timers: set[asyncio.TimerHandle] = set()

    async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        if delay_s > 0:
            loop = asyncio.get_running_loop()
            handle = loop.call_later(delay_s, self._start, execution_id)
            self._timers.add(handle)
        else:
            self._start(execution_id)

    def _start(self, execution_id: uuid.UUID) -> None:
        task = asyncio.get_running_loop().create_task(self._run(execution_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, execution_id: uuid.UUID) -> None:
        assert self.runtime is not None, "InProcessWorker.runtime is set at start-up"
        async with self._slots:
            try:
                await executions.execute_queued(self.runtime, execution_id)
            except Exception:
                # The row stays as it was (queued or running): the sweeper takes it from there.
                log.exception("execution_crashed", execution_id=str(execution_id))

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight executions finish (shutdown); rows still running then are recovered
        by the sweeper after a restart."""
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for task in pending:
                task.cancel()


async def sweep_forever(runtime: Runtime) -> None:
    """Run the sweeper every SWEEP_INTERVAL_S until cancelled; errors are logged, not fatal."""
    while True:
        try:
            published = await executions.sweep(runtime)
            if published:
                log.info("sweeper_republished", count=len(published))
        except Exception:
            log.exception("sweep_failed")
        await asyncio.sleep(runtime.settings.sweep_interval_s)


@contextlib.asynccontextmanager
async def sweeper(runtime: Runtime) -> AsyncIterator[None]:
    task = asyncio.create_task(sweep_forever(runtime))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
