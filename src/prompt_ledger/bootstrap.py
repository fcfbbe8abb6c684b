"""The composition root: the one place that builds a process's :class:`Runtime` from
``Settings`` and the one place that releases it.

Both entry points go through here: ``api/app.py`` (``promptledger serve``, and every app the
tests build) and ``workers/tasks.py`` (the Celery worker's ``LoopRunner``).

The caller passes the dispatcher, rather than a flag saying which one to build, because the
choice is each entry point's and needs what only the entry point knows: the API takes Celery
when ``REDIS_URL`` is set and the in-process worker otherwise, while the Celery worker
publishes its retries to the broker it consumes (its Celery app's ``broker_url``, which the
``celery`` command line may set), whatever ``REDIS_URL`` says. A flag would have to carry that
URL too, and would move a policy of the entry points into this module.

Two functions rather than one async context manager, because neither caller builds and closes
in one block: the API builds in ``create_app``, outside any event loop (the app state must exist
before, and without, its lifespan running), and closes at the end of its lifespan; the worker
builds when its process first takes a task and closes from Celery's ``worker_shutdown`` signal.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from prompt_ledger.config import Settings
from prompt_ledger.db.session import Database
from prompt_ledger.providers.registry import close_providers, providers_from_settings
from prompt_ledger.services import costs
from prompt_ledger.services.executions import Dispatcher, Runtime
from prompt_ledger.workers.inprocess import InProcessWorker

# How long shutdown waits for the in-process worker's executions before cancelling them (the
# sweeper recovers their rows after the restart).
SHUTDOWN_DRAIN_S = 10.0


@runtime_checkable
class _Closes(Protocol):
    """A dispatcher holding resources of its own (``CeleryDispatcher``: a publish thread, a
    broker connection pool, the breaker's probe)."""

    def close(self) -> None: ...


def build_runtime(settings: Settings, *, dispatcher: Dispatcher) -> Runtime:
    """The database, the providers and ``dispatcher``, as one ``Runtime``.

    An ``InProcessWorker`` dispatcher runs executions itself, so it is given the runtime it
    belongs to.
    """
    runtime = Runtime(
        db=Database(settings.resolved_database_url, pool_size=settings.database_pool_size),
        providers=providers_from_settings(settings),
        settings=settings,
        dispatcher=dispatcher,
    )
    if isinstance(dispatcher, InProcessWorker):
        dispatcher.runtime = runtime
    costs.warm_up()  # the price table loads here, not inside the first finishing execution
    return runtime


async def close_runtime(runtime: Runtime, *, drain_s: float = SHUTDOWN_DRAIN_S) -> None:
    """Release what :func:`build_runtime` made, most dependent first: let the in-process
    worker finish what it runs (up to ``drain_s``), close the dispatcher, close the providers'
    connection pools, dispose of the database engine.

    The caller first stops whatever else may still publish (the sweeper; the Celery worker's
    own executions, which ``LoopRunner.drain`` waits for).
    """
    dispatcher = runtime.dispatcher
    if isinstance(dispatcher, InProcessWorker):
        await dispatcher.drain(drain_s)
    if isinstance(dispatcher, _Closes):
        dispatcher.close()
    await close_providers(runtime.providers)
    await runtime.db.dispose()
