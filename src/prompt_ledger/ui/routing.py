"""Per-request UI plumbing: who is signed in, CSRF checks, page rendering, HTML errors.

The UI is one more adapter over the services (like ``api/`` and ``cli.py``): the domain
errors the services raise are rendered here as HTML pages with the same status codes the
API uses, instead of the API's JSON envelope.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import DBAPIError, OperationalError

from prompt_ledger.api.deps import AppState, StateDep
from prompt_ledger.errors import Forbidden, PromptLedgerError
from prompt_ledger.logging import get_logger
from prompt_ledger.ui.security import COOKIE, PREFIX, SessionCodec, UISession, csrf_matches
from prompt_ledger.ui.templating import templates

log = get_logger(__name__)


class SignInRequired(Exception):
    """Raised by pages that need a signed-in user; answered with a redirect to sign-in."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(slots=True)
class UI:
    """The request as the UI sees it: the app state, the session cookie and who signed in."""

    request: Request
    state: AppState
    codec: SessionCodec
    session: UISession | None
    signed_in: bool

    def page(
        self, template: str, context: dict[str, Any] | None = None, *, status: int = 200
    ) -> HTMLResponse:
        """Render a page; a visitor without a session gets one (forms need its CSRF token)."""
        session = self.session or self.codec.new()
        response = templates.TemplateResponse(
            self.request,
            template,
            {"csrf_token": session.csrf, "signed_in": self.signed_in, **(context or {})},
            status_code=status,
        )
        if self.session is None:
            set_session_cookie(self, response, session)
        return response


def set_session_cookie(ui: UI, response: Response, session: UISession) -> None:
    response.set_cookie(
        COOKIE,
        ui.codec.dumps(session),
        max_age=ui.codec.max_age_s,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=ui.request.url.scheme == "https",
    )


def clear_session_cookie(ui: UI, response: Response) -> None:
    response.delete_cookie(
        COOKIE,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=ui.request.url.scheme == "https",
    )


def get_codec(request: Request) -> SessionCodec:
    codec: SessionCodec = request.app.state.ui_codec
    return codec


async def get_ui(request: Request, state: StateDep) -> UI:
    codec = get_codec(request)
    session = codec.loads(request.cookies.get(COOKIE))
    accepted = {codec.key_id(digest) for digest in state.api_key_digests}
    signed_in = session is not None and session.key_id in accepted
    return UI(request, state, codec, session, signed_in)


UIDep = Annotated[UI, Depends(get_ui)]


async def signed_in(ui: UIDep) -> UI:
    if not ui.signed_in:
        request = ui.request
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    return ui


SignedInDep = Annotated[UI, Depends(signed_in)]


async def csrf_checked(ui: UIDep) -> UI:
    """Every state-changing form: its ``csrf_token`` must be the session's (else 403)."""
    form = await ui.request.form()
    if not csrf_matches(ui.session, form.get("csrf_token")):
        raise Forbidden(
            "this form's CSRF token is missing or does not match your session; "
            "reload the page and submit it again"
        )
    return ui


CsrfDep = Annotated[UI, Depends(csrf_checked)]


async def signed_in_form(ui: CsrfDep) -> UI:
    """A state-changing form of a signed-in user: CSRF first, so a forged post is 403."""
    return await signed_in(ui)


SignedInFormDep = Annotated[UI, Depends(signed_in_form)]


def sign_in_url(next_path: str) -> str:
    return f"{PREFIX}/sign-in?next={quote(next_path, safe='')}"


def safe_next(next_path: str | None) -> str:
    """Only paths inside the UI (no open redirect to another host or scheme)."""
    if next_path and next_path.startswith(PREFIX + "/") and not next_path.startswith("//"):
        return next_path
    return f"{PREFIX}/prompts"


def error_page(request: Request, status: int, code: str, message: str) -> HTMLResponse:
    codec = get_codec(request)
    session = codec.loads(request.cookies.get(COOKIE))
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "csrf_token": session.csrf if session else "",
            "signed_in": False,
            "status": status,
            "code": code,
            "message": message,
        },
        status_code=status,
    )


def _database_down(exc: Exception) -> bool:
    """The same reading as the API's handler (``api/errors.py``): a lost or refused
    connection is 503, any other database error a 500."""
    if isinstance(exc, DBAPIError):
        return isinstance(exc, OperationalError) or exc.connection_invalidated
    return isinstance(exc, OSError)


class UIRoute(APIRoute):
    """Renders the services' errors and bad query strings as HTML pages."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ui_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                url = sign_in_url(exc.next_path)
                if request.headers.get("HX-Request"):
                    return Response(status_code=401, headers={"HX-Redirect": url})
                return RedirectResponse(url, status_code=303)
            except PromptLedgerError as exc:
                return error_page(request, exc.status, exc.code, exc.message)
            except RequestValidationError as exc:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}"
                    for err in exc.errors()
                )
                return error_page(request, 422, "validation_error", problems or "invalid request")
            except Exception as exc:
                # Answered here, not by the app's last-resort handler: that one runs outside
                # every middleware (so without the CSP) and answers JSON.
                if _database_down(exc):
                    log.warning(
                        "database_unavailable", path=request.url.path, error=type(exc).__name__
                    )
                    return error_page(
                        request, 503, "unavailable", "the database is not reachable; retry later"
                    )
                log.error("unhandled_error", path=request.url.path, exc_info=exc)
                return error_page(
                    request, 500, "internal", "internal error; the server log has the details"
                )

        return ui_handler
