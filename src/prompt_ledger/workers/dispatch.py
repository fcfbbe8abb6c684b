"""Publishing execution ids after commit to Celery on Redis (the in-process worker is its
own dispatcher, see ``workers/inprocess.py``)."""

from __future__ import annotations

import asyncio
import functools
import uuid
from concurrent.futures import ThreadPoolExecutor

from prompt_ledger.workers.celery_app import EXECUTE_TASK, create_celery


class CeleryDispatcher:
    """Publishes to the Celery queue on ``broker_url``; the publish is blocking I/O, so it
    runs in a thread: one thread of its own (a publish is ~0.2 ms of CPU, so one thread keeps
    up with thousands a second), which spares each submit ``asyncio.to_thread``'s context
    copy and a hop through the shared default pool."""

    def __init__(self, broker_url: str) -> None:
        self._celery = create_celery(broker_url)
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="celery-publish")

    async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        send = functools.partial(self._celery.send_task, EXECUTE_TASK, args=(str(execution_id),))
        if delay_s > 0:
            send = functools.partial(send, countdown=delay_s)
        await asyncio.get_running_loop().run_in_executor(self._thread, send)

    def close(self) -> None:
        self._thread.shutdown(wait=False)
        self._celery.close()
