"""The ASGI application: routers, error handlers, body cap, and process-wide state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from prompt_ledger import __version__
from prompt_ledger.api.deps import AppState, key_digests, require_api_key
from prompt_ledger.api.errors import install_error_handlers
from prompt_ledger.api.middleware import BodyLimitMiddleware
from prompt_ledger.api.routes import ops, prompts
from prompt_ledger.config import Settings, get_settings
from prompt_ledger.db.session import create_engine, session_factory
from prompt_ledger.logging import configure_logging


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app. ``promptledger serve`` calls this once per worker process."""
    settings = settings or get_settings()
    configure_logging(debug=settings.debug)
    keys = settings.accepted_api_keys()
    if not keys:
        raise RuntimeError(
            "no API key: set API_KEY, or start with `promptledger serve`, which creates one"
        )
    engine = create_engine(settings.resolved_database_url)
    state = AppState(
        settings=settings,
        engine=engine,
        sessions=session_factory(engine),
        api_key_digests=key_digests(keys),
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await engine.dispose()

    app = FastAPI(
        title="PromptLedger",
        version=__version__,
        summary="Prompt registry and LLM execution ledger",
        lifespan=lifespan,
    )
    app.state.promptledger = state
    install_error_handlers(app)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes)
    app.include_router(ops.router)
    app.include_router(prompts.router, dependencies=[Depends(require_api_key)])
    return app
