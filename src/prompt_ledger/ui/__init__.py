"""The browser UI (SPEC §11): server-rendered pages over the same services as the API."""

from __future__ import annotations

import secrets
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from prompt_ledger.config import Settings
from prompt_ledger.ui.security import PREFIX, SessionCodec, UIHeadersMiddleware

STATIC_DIR = Path(__file__).parent / "static"


def install_ui(app: FastAPI, settings: Settings) -> None:
    """Mount the UI at /ui (``/`` redirects there), its static files and its headers."""
    from prompt_ledger.ui.views import router  # the pages import the API's dependencies

    secret = (
        settings.ui_session_secret.get_secret_value().encode()
        if settings.ui_session_secret
        else secrets.token_bytes(32)
    )
    app.state.ui_codec = SessionCodec(secret, max_age_s=settings.ui_session_max_age_s)

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse(PREFIX, status_code=307)

    app.mount(f"{PREFIX}/static", StaticFiles(directory=STATIC_DIR), name="ui-static")
    app.include_router(router)
    app.add_middleware(UIHeadersMiddleware)
