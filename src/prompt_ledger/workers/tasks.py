"""Thin Celery task shims over ``services.executions``.

A Celery task here does not wait for the provider: it hands the id to this process's asyncio
loop (one per process, in a background thread) and returns, so one worker process keeps
hundreds of provider calls in flight. A bounded semaphore makes the task block when the loop
is full, which is the back-pressure Celery's prefetch then respects.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from concurrent.futures import Future

from celery import Task, shared_task
from celery.signals import worker_shutdown

from prompt_ledger.bootstrap import build_runtime, close_runtime
from prompt_ledger.config import get_settings
from prompt_ledger.db.tables import ExecutionStatus
from prompt_ledger.gc_tuning import freeze_and_tune
from prompt_ledger.logging import configure_logging, get_logger
from prompt_ledger.services import executions
from prompt_ledger.services.executions import Runtime
from prompt_ledger.workers.celery_app import EXECUTE_TASK
from prompt_ledger.workers.dispatch import CeleryDispatcher

log = get_logger(__name__)


def _new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency except on Windows
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class LoopRunner:
    """An event loop in a daemon thread, with the process's engine, providers and runtime."""

    def __init__(self, max_in_flight: int, broker_url: str) -> None:
        self.pid = os.getpid()
        self.broker_url = broker_url
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._in_flight: set[Future[ExecutionStatus | None]] = set()
        self._lock = threading.Lock()
        self._draining = threading.Event()
        # uvloop (as uvicorn uses for the API) when installed: cheaper I/O callbacks for the
        # hundreds of provider and database calls this loop keeps in flight.
        self.loop = _new_event_loop()
        threading.Thread(
            target=self.loop.run_forever, name="promptledger-loop", daemon=True
        ).start()
        settings = get_settings()
        configure_logging(debug=settings.debug)
        self.runtime: Runtime = build_runtime(
            settings, dispatcher=CeleryDispatcher(self.broker_url)
        )
        freeze_and_tune()  # hundreds of executions in flight: as for `serve` (gc_tuning)

    def submit(self, execution_id: uuid.UUID) -> None:
        if self._draining.is_set():
            # Shutting down: leave the row queued (nothing was claimed); the sweeper
            # re-publishes it to a live worker.
            log.info("execution_left_for_another_worker", execution_id=str(execution_id))
            return
        self._slots.acquire()
        future = asyncio.run_coroutine_threadsafe(
            executions.execute_queued(self.runtime, execution_id), self.loop
        )
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: Future[ExecutionStatus | None]) -> None:
        with self._lock:
            self._in_flight.discard(future)
        self._slots.release()
        if not future.cancelled() and (exc := future.exception()) is not None:
            log.error("execution_crashed", error=type(exc).__name__)

    def drain(self, timeout_s: float) -> None:
        """Stop taking executions, wait for those in flight (warm shutdown), then close."""
        self._draining.set()
        with self._lock:
            pending = list(self._in_flight)
        for future in pending:
            try:
                future.result(timeout=timeout_s)
            except Exception:  # noqa: S112 - a crashed execution is recovered by the sweeper
                continue
        asyncio.run_coroutine_threadsafe(close_runtime(self.runtime), self.loop).result(timeout=10)


_runner: LoopRunner | None = None
_runner_lock = threading.Lock()


def runner(broker_url: str) -> LoopRunner:
    """This process's runner (created after fork, so prefork children get their own); its
    dispatcher publishes retries to ``broker_url``, the broker this worker consumes."""
    global _runner
    with _runner_lock:
        if _runner is None or _runner.pid != os.getpid():
            _runner = LoopRunner(get_settings().worker_max_in_flight, broker_url)
        return _runner


# shared_task: registered on whichever app the worker runs (the lazily built one of
# workers/celery_app.py), so importing this module builds no app.
@shared_task(name=EXECUTE_TASK, bind=True)
def execute(self: Task[[str], None], execution_id: str) -> None:
    runner(self.app.conf.broker_url).submit(uuid.UUID(execution_id))


# worker_shutdown fires once the consumer has stopped (worker_shutting_down fires before, while
# messages may still arrive: one claimed after the drain would be cut off mid-call).
@worker_shutdown.connect
def _drain_on_shutdown(**_: object) -> None:
    if _runner is not None and _runner.pid == os.getpid():
        _runner.drain(timeout_s=get_settings().provider_timeout_s)
