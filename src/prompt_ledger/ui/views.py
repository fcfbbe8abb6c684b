"""The UI's pages (SPEC §11): thin handlers over the same services the API routes call."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Form, Path, Query
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.api.deps import SessionDep, SnapshotDep, accepted_key_digest
from prompt_ledger.api.routes import executions as execution_routes
from prompt_ledger.api.routes import prompts as prompt_routes
from prompt_ledger.db.tables import (
    ACTIVE_LABEL,
    LABEL_PATTERN,
    ExecutionMode,
    ExecutionStatus,
    PromptMode,
    PromptVersion,
    VersionType,
)
from prompt_ledger.errors import InvalidTemplate, NotFound, ValidationFailed
from prompt_ledger.schemas.common import MAX_INT32, PROMPT_NAME_PATTERN, PromptName
from prompt_ledger.schemas.executions import ExecutionOut
from prompt_ledger.schemas.prompts import SavePromptRequest
from prompt_ledger.services import analytics, diff, labels
from prompt_ledger.services import executions as execution_service
from prompt_ledger.services import prompts as prompt_service
from prompt_ledger.ui.routing import (
    UI,
    CsrfDep,
    SignedInDep,
    SignedInFormDep,
    UIDep,
    UIRoute,
    clear_session_cookie,
    safe_next,
    set_session_cookie,
)
from prompt_ledger.ui.security import PREFIX

router = APIRouter(prefix=PREFIX, route_class=UIRoute, include_in_schema=False)

NameParam = Annotated[str, Path(pattern=PROMPT_NAME_PATTERN)]
PAGE_SIZE = 50
WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}
_prompt_name = TypeAdapter(PromptName)
E = TypeVar("E", bound=Enum)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _choice(kind: type[E], value: str | None, field: str) -> E | None:
    """An optional enum from a form's query string (an empty select means "any")."""
    if not value:
        return None
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(str(m.value) for m in kind)
        raise ValidationFailed(f"{field}: must be one of {allowed}") from None


def _moment(value: str | None, field: str) -> datetime | None:
    """An ISO-8601 time (a ``datetime-local`` input's value is read as UTC)."""
    if not value:
        return None
    try:
        return analytics.as_utc(datetime.fromisoformat(value))
    except ValueError:
        raise ValidationFailed(f"{field}: not an ISO-8601 date and time") from None


def _form_text(value: str) -> str:
    """Browsers send a textarea's line breaks as CRLF; the text as typed has LF."""
    return value.replace("\r\n", "\n")


# --- sign-in ------------------------------------------------------------------------------


@router.get("", response_class=HTMLResponse)
async def home() -> Response:
    return _see_other(f"{PREFIX}/prompts")


@router.get("/sign-in", response_class=HTMLResponse)
async def sign_in_page(ui: UIDep, next: str | None = None) -> Response:
    if ui.signed_in:
        return _see_other(safe_next(next))
    return ui.page("sign_in.html", {"next": safe_next(next), "error": None})


@router.post("/sign-in", response_class=HTMLResponse)
async def sign_in(
    ui: CsrfDep,
    api_key: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "",
) -> Response:
    digest = accepted_key_digest(ui.state, api_key.strip()) if api_key.strip() else None
    if digest is None:
        return ui.page(
            "sign_in.html",
            {"next": safe_next(next), "error": "That API key is not accepted."},
            status=401,
        )
    response = _see_other(safe_next(next))
    # a fresh session (and CSRF token) at every sign-in: no fixation of a pre-sign-in cookie
    set_session_cookie(ui, response, ui.codec.new(ui.codec.key_id(digest)))
    return response


@router.post("/sign-out", response_class=HTMLResponse)
async def sign_out(ui: CsrfDep) -> Response:
    response = _see_other(f"{PREFIX}/sign-in")
    clear_session_cookie(ui, response)
    return response


# --- prompts ------------------------------------------------------------------------------


@router.get("/prompts", response_class=HTMLResponse)
async def prompts_page(
    ui: SignedInDep,
    session: SnapshotDep,
    q: Annotated[str, Query(max_length=128)] = "",
    mode: str | None = None,
    cursor: str | None = None,
) -> Response:
    prompt_mode = _choice(PromptMode, mode, "mode")
    rows, last = await prompt_service.list_prompts(
        session,
        mode=prompt_mode,
        after_name=prompt_routes.decode_cursor(cursor) if cursor else None,
        limit=PAGE_SIZE,
        name_contains=q.strip() or None,
    )
    activity = await analytics.recent_activity(session, [p.id for p, _ in rows])
    return ui.page(
        "prompts.html",
        {
            "rows": [(p, v, activity[p.id]) for p, v in rows],
            "q": q,
            "mode": prompt_mode.value if prompt_mode else "",
            "next_cursor": prompt_routes.encode_cursor(last) if last else None,
            "paged": cursor is not None,
        },
    )


@router.get("/prompts/new", response_class=HTMLResponse)
async def new_prompt_page(ui: SignedInDep) -> Response:
    return ui.page("prompt_new.html", {"name": "", "description": "", "text": "", "error": None})


@router.post("/prompts/new", response_class=HTMLResponse)
async def create_prompt(
    ui: SignedInFormDep,
    session: SessionDep,
    name: Annotated[str, Form()] = "",
    description: Annotated[str, Form()] = "",
    template_source: Annotated[str, Form()] = "",
) -> Response:
    text = _form_text(template_source)
    form = {"name": name, "description": description, "text": text}
    try:
        _prompt_name.validate_python(name)
    except ValidationError:
        error = "A name is 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit."
        return ui.page("prompt_new.html", {**form, "error": error}, status=422)
    if await _prompt_exists(session, name):
        error = f"A prompt named '{name}' exists already: open it to save a new version."
        return ui.page("prompt_new.html", {**form, "error": error}, status=409)
    try:
        body = SavePromptRequest(template_source=text, description=description or None)
        await prompt_service.save_version(
            session,
            name,
            body.content(),
            mode=PromptMode.FULL,
            description=body.description,
            metadata=body.metadata,
            activate=True,
        )
    except (ValidationError, InvalidTemplate) as exc:
        return ui.page("prompt_new.html", {**form, "error": _problem(exc)}, status=422)
    return _see_other(f"{PREFIX}/prompts/{name}?saved=1")


async def _prompt_exists(session: AsyncSession, name: str) -> bool:
    try:
        await prompt_service.get_prompt(session, name)
    except NotFound:
        return False
    return True


def _problem(exc: ValidationError | InvalidTemplate | ValidationFailed) -> str:
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
    return exc.message


EDITOR_FIELDS = ("template_source", "messages", "config", "variables_schema")


def _editor_of(version: PromptVersion | None) -> dict[str, str]:
    """The editor's fields as a version fills them (JSON members pretty-printed)."""
    if version is None:
        return {"type": VersionType.TEXT.value, **dict.fromkeys(EDITOR_FIELDS, "")}
    chat = version.type == VersionType.CHAT

    def shown(value: Any) -> str:
        return json.dumps(value, indent=2, ensure_ascii=False) if value else ""

    return {
        "type": version.type.value,
        "template_source": "" if chat else version.template_source,
        "messages": shown(version.messages) if chat else "",
        "config": shown(version.config),
        "variables_schema": shown(version.variables_schema),
    }


def _save_request(form: dict[str, str], *, activate: bool) -> SavePromptRequest:
    """The editor's fields as the API's request body, validated by the same schema.

    The type decides which of the template and the messages is sent; an empty JSON field
    is absent. Raises ValidationFailed (a field is not JSON) or pydantic's ValidationError.
    """
    body: dict[str, Any] = {"type": form["type"] or VersionType.TEXT.value, "activate": activate}
    fields: tuple[str, ...] = ("config", "variables_schema")
    if body["type"] == VersionType.CHAT.value:
        fields = ("messages", *fields)
    else:
        body["template_source"] = form["template_source"]
    for field in fields:
        if form[field].strip():
            try:
                body[field] = json.loads(form[field])
            except json.JSONDecodeError as exc:
                raise ValidationFailed(f"{field}: not JSON ({exc})") from None
    return SavePromptRequest.model_validate(body)


async def _prompt_page(
    ui: UI,
    session: AsyncSession,
    name: str,
    *,
    draft: dict[str, str] | None = None,
    error: str | None = None,
    status: int = 200,
    diff_from: int | None = None,
    diff_to: int | None = None,
) -> HTMLResponse:
    prompt = await prompt_service.get_prompt(session, name)
    active = await prompt_service.get_active_version(session, prompt)
    versions = await prompt_service.list_versions(session, name)
    events = await prompt_service.list_events(session, name)
    label_states = await labels.list_labels(session, name)
    by_version: dict[int, list[str]] = {}
    for state in label_states:
        if state.version_number is not None:
            by_version.setdefault(state.version_number, []).append(state.label)
        for entry in state.split or ():
            by_version.setdefault(entry.version, []).append(f"{state.label} {entry.weight}%")
    compared = None
    if diff_from is not None and diff_to is not None:
        compared = await diff.diff_versions(session, name, diff_from, diff_to)
    now = datetime.now(UTC)
    week = await analytics.hourly_series(
        session, prompt_ids=[prompt.id], since=now - WINDOWS["7d"], until=now
    )
    base = active or (versions[0] if versions else None)
    query = ui.request.query_params
    return ui.page(
        "prompt.html",
        {
            "prompt": prompt,
            "active": active,
            "base": base,
            "versions": versions,
            "events": list(reversed(events)),  # newest first on the page
            "stats_24h": analytics.total_of(week[-24:]),
            "stats_7d": analytics.total_of(week),
            "editor": draft if draft is not None else _editor_of(base),
            "error": error,
            "labels": label_states,
            "labels_of": by_version,
            "diff": compared,
            "diff_from": diff_from if diff_from is not None else _older(versions),
            "diff_to": diff_to
            if diff_to is not None
            else (versions[0].version_number if versions else None),
            "saved": query.get("saved"),
            "activated": query.get("activated"),
            "labelled": query.get("labelled"),
        },
        status=status,
    )


def _older(versions: Sequence[PromptVersion]) -> int | None:
    """The diff picker's default "from": the version before the newest."""
    return versions[1].version_number if len(versions) > 1 else None


VersionNumber = Annotated[int, Path(ge=1, le=MAX_INT32)]
VersionQuery = Annotated[int | None, Query(ge=1, le=MAX_INT32)]


@router.get("/prompts/{name}", response_class=HTMLResponse)
async def prompt_page(
    name: NameParam,
    ui: SignedInDep,
    session: SnapshotDep,
    from_: Annotated[int | None, Query(alias="from", ge=1, le=MAX_INT32)] = None,
    to: VersionQuery = None,
) -> Response:
    if (from_ is None) != (to is None):
        raise ValidationFailed("a diff needs both `from` and `to`")
    return await _prompt_page(ui, session, name, diff_from=from_, diff_to=to)


@router.post("/prompts/{name}/versions", response_class=HTMLResponse)
async def save_version(
    name: NameParam,
    ui: SignedInFormDep,
    session: SessionDep,
    template_source: Annotated[str, Form()] = "",
    activate: Annotated[str, Form()] = "",
    type: Annotated[str, Form()] = "",
    messages: Annotated[str, Form()] = "",
    config: Annotated[str, Form()] = "",
    variables_schema: Annotated[str, Form()] = "",
) -> Response:
    form = {
        "type": type or VersionType.TEXT.value,
        "template_source": _form_text(template_source),
        "messages": _form_text(messages),
        "config": _form_text(config),
        "variables_schema": _form_text(variables_schema),
    }
    try:
        body = _save_request(form, activate=activate == "on")
        result = await prompt_service.save_version(
            session,
            name,
            body.content(),
            mode=PromptMode.FULL,
            metadata=body.metadata,
            activate=body.activate,
        )
    except (ValidationError, InvalidTemplate, ValidationFailed) as exc:
        return await _prompt_page(ui, session, name, draft=form, error=_problem(exc), status=422)
    outcome = (
        result.version.version_number if result.created else f"same-{result.version.version_number}"
    )
    return _see_other(f"{PREFIX}/prompts/{name}?saved={outcome}")


@router.get("/prompts/{name}/versions/{number}/activate", response_class=HTMLResponse)
async def confirm_activate(
    name: NameParam, number: VersionNumber, ui: SignedInDep, session: SnapshotDep
) -> Response:
    prompt = await prompt_service.get_prompt(session, name)
    version = await prompt_service.get_version(session, prompt, number)
    active = await prompt_service.get_active_version(session, prompt)
    return ui.page(
        "confirm_activate.html", {"prompt": prompt, "version": version, "active": active}
    )


@router.post("/prompts/{name}/versions/{number}/activate", response_class=HTMLResponse)
async def activate(
    name: NameParam, number: VersionNumber, ui: SignedInFormDep, session: SessionDep
) -> Response:
    await prompt_service.activate(session, name, number)
    return _see_other(f"{PREFIX}/prompts/{name}?activated={number}")


LabelName = Annotated[str, Query(pattern=LABEL_PATTERN, max_length=64)]
LabelPath = Annotated[str, Path(pattern=LABEL_PATTERN, max_length=64)]


@router.get("/prompts/{name}/labels/move", response_class=HTMLResponse)
async def confirm_label(
    name: NameParam,
    ui: SignedInDep,
    session: SnapshotDep,
    label: LabelName,
    version: Annotated[int, Query(ge=1, le=MAX_INT32)],
) -> Response:
    """The confirmation step before a label moves (``active`` too: that is an activation)."""
    prompt = await prompt_service.get_prompt(session, name)
    target = await prompt_service.get_version(session, prompt, version)
    current = next((s for s in await labels.list_labels(session, name) if s.label == label), None)
    return ui.page(
        "confirm_label.html",
        {"prompt": prompt, "label": label, "version": target, "current": current},
    )


@router.post("/prompts/{name}/labels/{label}", response_class=HTMLResponse)
async def move_label(
    name: NameParam,
    label: LabelPath,
    ui: SignedInFormDep,
    session: SessionDep,
    version: Annotated[int, Form(ge=1, le=MAX_INT32)],
) -> Response:
    """Point a label at one version: the API's ``PUT /v1/prompts/{name}/labels/{label}``."""
    await labels.set_label(session, name, label, version=version)
    if label == ACTIVE_LABEL:
        return _see_other(f"{PREFIX}/prompts/{name}?activated={version}")
    return _see_other(f"{PREFIX}/prompts/{name}?labelled={label}")


# --- executions ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LedgerFilters:
    """The ledger pages' query filters, as typed in the form (parsed by ``_ledger``, so a
    bad value is the page's 422, not FastAPI's JSON)."""

    prompt_name: str | None = None
    status: str | None = None
    execution_mode: str | None = None
    prompt_mode: str | None = None
    since: str | None = None
    until: str | None = None


LedgerFiltersDep = Annotated[LedgerFilters, Depends()]


async def _ledger(
    session: AsyncSession, query: LedgerFilters, *, cursor: str | None
) -> dict[str, Any]:
    filters = {
        "prompt_name": (query.prompt_name or "").strip(),
        "status": query.status or "",
        "execution_mode": query.execution_mode or "",
        "prompt_mode": query.prompt_mode or "",
        "since": query.since or "",
        "until": query.until or "",
    }
    records, last = await execution_service.list_page(
        session,
        prompt_name=filters["prompt_name"] or None,
        status=_choice(ExecutionStatus, query.status, "status"),
        execution_mode=_choice(ExecutionMode, query.execution_mode, "execution_mode"),
        prompt_mode=_choice(PromptMode, query.prompt_mode, "prompt_mode"),
        since=_moment(query.since, "since"),
        until=_moment(query.until, "until"),
        before=execution_routes.decode_cursor(cursor) if cursor else None,
        limit=PAGE_SIZE,
    )
    return {
        "items": [ExecutionOut.of(r) for r in records],
        "filters": filters,
        "query": {k: v for k, v in filters.items() if v},
        "next_cursor": execution_routes.encode_cursor(last) if last else None,
        "paged": cursor is not None,
    }


@router.get("/executions", response_class=HTMLResponse)
async def executions_page(
    ui: SignedInDep,
    session: SnapshotDep,
    filters: LedgerFiltersDep,
    cursor: str | None = None,
    live: str = "1",
) -> Response:
    ledger = await _ledger(session, filters, cursor=cursor)
    # The live view refreshes the first page only: a later page is a fixed slice of history.
    live_on = live != "0" and cursor is None
    return ui.page(
        "executions.html",
        {
            **ledger,
            "live": live_on,
            "seen": _newest(ledger["items"]),
            "shown": _fingerprint(ledger["items"]),
            "statuses": ExecutionStatus,
        },
    )


@router.get("/executions/live", response_class=HTMLResponse)
async def executions_live(
    ui: SignedInDep,
    session: SnapshotDep,
    filters: LedgerFiltersDep,
    seen: str | None = None,
    shown: str | None = None,
) -> Response:
    """The first page again (htmx polls it); rows newer than ``seen`` are highlighted.

    204 (htmx swaps nothing) when the rows and their statuses are those already ``shown``,
    so an idle ledger does not redraw the table, nor move the keyboard focus, every poll.
    """
    ledger = await _ledger(session, filters, cursor=None)
    previous = _moment(seen, "seen")
    fingerprint = _fingerprint(ledger["items"])
    if shown == fingerprint:
        return Response(status_code=204)
    newest = _newest(ledger["items"]) or seen or ""
    return ui.page(
        "_ledger.html",
        {**ledger, "live": True, "seen": newest, "shown": fingerprint, "new_after": previous},
    )


def _fingerprint(items: list[ExecutionOut]) -> str:
    digest = hashlib.sha256()
    for item in items:
        digest.update(f"{item.id}:{item.status.value};".encode())
    return digest.hexdigest()[:16]


def _newest(items: list[ExecutionOut]) -> str:
    return items[0].created_at.isoformat() if items else ""


@router.get("/executions/{execution_id}", response_class=HTMLResponse)
async def execution_page(execution_id: uuid.UUID, ui: SignedInDep) -> Response:
    record = await execution_service.get(ui.state.runtime, execution_id)
    return ui.page("execution.html", {"e": ExecutionOut.of(record)})


# --- analytics ----------------------------------------------------------------------------


@router.get("/analytics", response_class=HTMLResponse)
async def analytics_page(
    ui: SignedInDep,
    session: SnapshotDep,
    prompt: str | None = None,
    window: str = "24h",
) -> Response:
    if window not in WINDOWS:
        raise ValidationFailed(f"window: must be one of {', '.join(WINDOWS)}")
    until = datetime.now(UTC)
    since = until - WINDOWS[window]
    prompt_ids = None
    if prompt:
        prompt_ids = [(await prompt_service.get_prompt(session, prompt)).id]
    series = await analytics.hourly_series(session, prompt_ids=prompt_ids, since=since, until=until)
    report = await analytics.prompt_report(session, mode=None, since=since, until=until)
    chart = {
        "t": [int(p.hour.timestamp()) for p in series],
        "executions": [p.stats.executions for p in series],
        "failed": [p.stats.failed for p in series],
        "p95_latency_ms": [p.stats.p95_latency_ms for p in series],
        "prompt_tokens": [p.stats.prompt_tokens for p in series],
        "response_tokens": [p.stats.response_tokens for p in series],
        "cost_usd": [float(p.stats.cost_usd) for p in series],
    }
    return ui.page(
        "analytics.html",
        {
            "window": window,
            "windows": list(WINDOWS),
            "prompt": prompt or "",
            "report": report,
            "total": analytics.total_of(series),
            "chart": chart,
        },
    )


# Unknown pages under /ui get the UI's 404 page, not the API's JSON.
@router.get("/{path:path}", response_class=HTMLResponse)
async def not_found(path: str, ui: UIDep) -> Response:
    return ui.page(
        "error.html",
        {"status": 404, "code": "not_found", "message": f"there is no page /ui/{path}"},
        status=404,
    )
