"""The ASGI application: routers, error handlers, body cap, and process-wide state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from prompt_ledger import __version__
from prompt_ledger.api.deps import AppState, key_digests, require_api_key
from prompt_ledger.api.errors import install_error_handlers
from prompt_ledger.api.http_metrics import HttpMetrics, HttpMetricsMiddleware
from prompt_ledger.api.middleware import BodyLimitMiddleware
from prompt_ledger.api.routes import (
    analytics,
    executions,
    labels,
    metrics,
    models,
    ops,
    prompts,
    tracking,
)
from prompt_ledger.bootstrap import build_runtime, close_runtime
from prompt_ledger.config import Settings, get_settings
from prompt_ledger.gc_tuning import freeze_and_tune
from prompt_ledger.logging import configure_logging
from prompt_ledger.services.executions import Dispatcher
from prompt_ledger.ui import install_ui
from prompt_ledger.workers.dispatch import CeleryDispatcher
from prompt_ledger.workers.inprocess import InProcessWorker, sweeper


def serve_app() -> FastAPI:
    """The app as ``promptledger serve`` runs it, once per worker process."""
    return create_app(freeze_gc=True)


def create_app(settings: Settings | None = None, *, freeze_gc: bool = False) -> FastAPI:
    """Build the app (tests build many, with their own settings)."""
    settings = settings or get_settings()
    configure_logging(debug=settings.debug)
    keys = settings.accepted_api_keys()
    if not keys:
        raise RuntimeError(
            "no API key: set API_KEY, or start with `promptledger serve`, which creates one"
        )
    dispatcher: Dispatcher = (
        CeleryDispatcher(settings.redis_url) if settings.redis_url else InProcessWorker()
    )
    runtime = build_runtime(settings, dispatcher=dispatcher)
    state = AppState(
        settings=settings,
        db=runtime.db,
        api_key_digests=key_digests(keys),
        runtime=runtime,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if freeze_gc:
            # Everything imported and built so far lives as long as the process: freezing
            # it keeps full GC passes from walking it (~110 ms pauses measured otherwise);
            # and fewer young-generation passes (see gc_tuning).
            freeze_and_tune()
        async with sweeper(runtime):
            yield
        await close_runtime(runtime)

    app = FastAPI(
        title="PromptLedger",
        version=__version__,
        summary="Prompt registry and LLM execution ledger",
        lifespan=lifespan,
    )
    app.state.promptledger = state
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.state.http_metrics = HttpMetrics()
    # added last, so outermost: it times and counts every answer, 413s from the cap included
    app.add_middleware(HttpMetricsMiddleware, metrics=app.state.http_metrics)
    app.include_router(ops.router)
    app.include_router(metrics.router)
    secured = [Depends(require_api_key)]
    # tracking first: its literal /register-code must win over prompts' /{name} patterns
    app.include_router(tracking.router, dependencies=secured)
    app.include_router(prompts.router, dependencies=secured)
    app.include_router(labels.router, dependencies=secured)
    app.include_router(analytics.router, dependencies=secured)
    app.include_router(executions.router, dependencies=secured)
    app.include_router(models.router, dependencies=secured)
    install_ui(app, settings)
    return app
