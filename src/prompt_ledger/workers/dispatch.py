"""Publishing execution ids after commit: to Celery on Redis, or to the in-process worker."""

from __future__ import annotations

import asyncio
import functools
import uuid


class CeleryDispatcher:
    """Publishes to the Celery queue. The publish is blocking I/O, so it runs in a thread."""

    async def publish(self, execution_id: uuid.UUID, *, delay_s: float = 0.0) -> None:
        from prompt_ledger.workers.tasks import execute  # the task module imports this one

        send = functools.partial(execute.apply_async, args=(str(execution_id),))
        if delay_s > 0:
            send = functools.partial(send, countdown=delay_s)
        await asyncio.to_thread(send)
