"""Publishing execution ids after commit to Celery on Redis (the in-process worker is its
own dispatcher, see ``workers/inprocess.py``).

A Redis outage must not cost every submit a timeout (SPEC §12): the row is committed before
the publish, so a publish that cannot succeed only has to fail quickly. A circuit breaker
does that. The first failed publish opens it; while it is open every publish fails at once
with ``QueueUnavailable`` (the caller logs it, and the sweeper publishes the row later through
this same dispatcher, failing just as fast until Redis is back); a probe thread PINGs the
broker every ``PROBE_INTERVAL_S`` and closes the breaker on the first answer.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from celery import Celery

from prompt_ledger.logging import get_logger
from prompt_ledger.workers.celery_app import EXECUTE_TASK, create_celery

log = get_logger(__name__)

# Bounds on one publish: connecting, and waiting for each reply. An LPUSH answers in well
# under a millisecond, so a second means the broker is gone or hung; kombu's defaults would
# retry the connection for broker_connection_timeout and wait on a hung broker for ever.
PUBLISH_TIMEOUT_S = 1.0
PROBE_INTERVAL_S = 0.5
PROBE_TIMEOUT_S = 0.5
_PROBE_TRANSPORT_OPTIONS = {
    "socket_connect_timeout": PROBE_TIMEOUT_S,
    "socket_timeout": PROBE_TIMEOUT_S,
}


class QueueUnavailable(Exception):
    """The id was not published: the broker failed this publish, or failed an earlier one and
    has not answered a probe since. The row is committed and stays ``queued``; the sweeper
    publishes it once the broker answers."""


def publisher_celery(broker_url: str) -> Celery:
    """The Celery app of a dispatcher: one connection attempt per publish (the breaker and the
    sweeper do the retrying), and every socket wait bounded by ``PUBLISH_TIMEOUT_S``, so a
    refused, unreachable or hung broker fails a publish within that time."""
    app = create_celery(broker_url)
    app.conf.update(
        broker_connection_timeout=PUBLISH_TIMEOUT_S,
        broker_transport_options={
            **app.conf.broker_transport_options,
            "max_retries": 0,
            "socket_connect_timeout": PUBLISH_TIMEOUT_S,
            "socket_timeout": PUBLISH_TIMEOUT_S,
        },
    )
    return app


class Breaker:
    """Closed: publishes are tried. Open: they fail at once, and a daemon thread calls
    ``answers()`` every ``interval_s`` until it returns True, which closes the breaker.

    The probe thread runs only while the breaker is open and holds the breaker weakly, so a
    healthy process runs no probe at all and an abandoned dispatcher stops probing once it is
    collected. A thread rather than an asyncio task: the dispatcher is built outside any event
    loop (``create_app``, the worker's ``LoopRunner``), is called from whichever loop runs the
    caller (uvicorn's in the API, the worker's own), and closes synchronously; a blocking PING
    on a thread of its own needs no loop and can never stall one, like the publishes, which
    already run on the dispatcher's own thread.
    """

    def __init__(self, answers: Callable[[], bool], *, interval_s: float) -> None:
        self._answers = answers
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._opened_at: float | None = None
        self._stopped = threading.Event()

    @property
    def is_open(self) -> bool:
        return self._opened_at is not None

    def check(self) -> None:
        """Raise ``QueueUnavailable`` while open."""
        opened_at = self._opened_at
        if opened_at is not None:
            raise QueueUnavailable(
                f"the queue has not answered for {time.monotonic() - opened_at:.1f}s "
                "(circuit breaker open): not published"
            )

    def trip(self, error: Exception) -> None:
        """Open after a failed publish (already open, or stopped: nothing to do)."""
        with self._lock:
            if self._opened_at is not None or self._stopped.is_set():
                return
            self._opened_at = time.monotonic()
            threading.Thread(
                target=_probe_until_closed,
                args=(weakref.ref(self), self._interval_s, self._stopped),
                name="queue-breaker-probe",
                daemon=True,
            ).start()
        log.warning("queue_breaker_opened", error=type(error).__name__, detail=str(error)[:200])

    def probe(self) -> bool:
        """One probe; True (and the breaker closed) if the broker answered."""
        if not self._answers():
            return False
        with self._lock:
            opened_at, self._opened_at = self._opened_at, None
        if opened_at is not None:
            log.info("queue_breaker_closed", open_s=round(time.monotonic() - opened_at, 3))
        return True

    def stop(self) -> None:
        """No more probes (the dispatcher is closing)."""
        self._stopped.set()


def _probe_until_closed(
    ref: weakref.ref[Breaker], interval_s: float, stopped: threading.Event
) -> None:
    while not stopped.wait(interval_s):
        breaker = ref()
        if breaker is None or breaker.probe():
            return
        del breaker  # sleep without keeping it alive


class CeleryDispatcher:
    """Publishes to the Celery queue on ``broker_url``; the publish is blocking I/O, so it
    runs in a thread: one thread of its own (a publish is ~0.2 ms of CPU, so one thread keeps
    up with thousands a second), which spares each submit ``asyncio.to_thread``'s context
    copy and a hop through the shared default pool.

    While the breaker is open a publish fails before any thread hop; publishes already waiting
    for the thread behind the one that failed fail as soon as they get it.
    """

    def __init__(self, broker_url: str) -> None:
        self._celery = publisher_celery(broker_url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="celery-publish")
        self._breaker = Breaker(self._broker_answers, interval_s=PROBE_INTERVAL_S)

    @property
    def breaker_open(self) -> bool:
        """True while publishes fail at once (Redis failed one and has not answered since)."""
        return self._breaker.is_open

    async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        self._breaker.check()
        send = functools.partial(self._celery.send_task, EXECUTE_TASK, args=(str(execution_id),))
        if delay_s > 0:
            send = functools.partial(send, countdown=delay_s)
        await asyncio.get_running_loop().run_in_executor(self._thread, self._send, send)

    def _send(self, send: Callable[[], object]) -> None:
        self._breaker.check()
        try:
            send()
        except Exception as exc:
            self._breaker.trip(exc)
            raise QueueUnavailable(f"publish failed: {type(exc).__name__}") from exc

    def _broker_answers(self) -> bool:
        """Connect and PING as a publish would (kombu's redis transport PINGs on connect,
        through redis-py), on a fresh connection bounded by ``PROBE_TIMEOUT_S``."""
        options = _PROBE_TRANSPORT_OPTIONS
        try:
            with self._celery.connection_for_write(transport_options=options) as conn:
                conn.ensure_connection(max_retries=0)
        except Exception:  # any failure to connect or to answer means "not yet"
            return False
        return True

    def close(self) -> None:
        self._breaker.stop()
        self._thread.shutdown(wait=False)
        self._celery.close()
