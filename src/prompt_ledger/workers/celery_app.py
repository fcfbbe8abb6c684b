"""The Celery app: ``celery -A prompt_ledger.workers.celery_app worker`` or ``promptledger worker``.

Messages carry execution ids only (no prompt text, no keys). The database row is the source
of truth; the queue is a wake-up call, so a lost or duplicated message costs nothing: the
claim is conditional and the sweeper re-publishes what was never picked up.

Importing this module builds nothing and reads no settings: the worker's app is built on
first use (``get_app()``, or the ``app`` attribute that ``celery -A`` looks up), so the API,
the CLI and the tests import it without creating a Celery app aimed at whatever REDIS_URL
the importing process happens to have.
"""

from __future__ import annotations

import functools

from celery import Celery

from prompt_ledger.config import get_settings

QUEUE = "promptledger"
EXECUTE_TASK = "promptledger.execute"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/0"


def create_celery(broker_url: str) -> Celery:
    app = Celery("prompt_ledger", broker=broker_url, include=["prompt_ledger.workers.tasks"])
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_default_queue=QUEUE,
        # A publish that cannot reach Redis fails fast; the committed row waits for the sweeper.
        # (The dispatcher bounds its publishes tighter still, and stops trying while Redis is
        # down: workers/dispatch.py.)
        broker_connection_timeout=2,
        task_publish_retry=False,
        broker_connection_retry_on_startup=True,
        broker_transport_options={"visibility_timeout": 3600},
        worker_hijack_root_logger=False,
        # Keep stderr ours: Celery's LoggingProxy would swallow structlog's JSON lines.
        worker_redirect_stdouts=False,
        worker_prefetch_multiplier=64,
        worker_send_task_events=False,
    )
    return app


@functools.cache
def get_app() -> Celery:
    """The worker's app, on REDIS_URL (read now, not at import); one per process."""
    return create_celery(get_settings().redis_url or DEFAULT_BROKER_URL)


def __getattr__(name: str) -> Celery:
    # PEP 562: `celery -A prompt_ledger.workers.celery_app` resolves the module, then reads its
    # `app` attribute (celery.app.utils.find_app); `from … import app` lands here too.
    if name in ("app", "celery_app"):
        return get_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
