"""The one invariant check every fault test ends with, and the traffic history it judges.

A test drives a real ``serve`` process through :class:`Api`, which records every request in a
:class:`History` (with transport errors as indeterminate outcomes), and declares its outages.
:func:`check_ledger` then waits for the ledger to settle and checks, over the database rows
and the stub provider's call counters:

1. every accepted request (2xx naming an execution) has its row — else *lost*;
2. no idempotency key has two executions, in the rows or in the answers — else *duplicated*;
3. every execution is ``succeeded``, ``failed`` or ``canceled`` within the stated bound —
   else *stuck*;
4. provider calls per execution (the stub's counter for the execution's ``key``) never exceed
   its recorded ``attempts`` — else *over-called*;
5. no 5xx except 503 inside a declared outage, and no transport error outside one of the
   API's own outages — else a *bad response*;
and, for finished rows, that their columns agree with their status (*inconsistent*).
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import sqlalchemy as sa

from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.testing.stub_provider import DirectiveError, parse_directives, stub_stats

TERMINAL = ("succeeded", "failed", "canceled")
REPORTS: list[LedgerReport] = []  # collected for the terminal summary (see conftest)
NOTES: list[str] = []  # measurements tests want shown in that summary (soak, fuzzing, /health)


def note(text: str) -> None:
    """Print ``text`` now and repeat it in the session's closing summary."""
    print(text)
    NOTES.append(text)


@dataclass
class Call:
    """One HTTP request the test sent, and how it ended."""

    started: float
    ended: float
    method: str
    path: str
    status: int | None  # None: no answer (connection refused/reset, timeout)
    error: str | None = None
    execution_id: str | None = None
    idempotency_key: str | None = None


@dataclass
class Outage:
    what: str
    start: float
    end: float
    api_down: bool  # transport errors are expected only while the API itself is down


class History:
    """Everything a test sent and every fault it injected (thread-safe)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.since = datetime.now(UTC) - timedelta(seconds=1)
        self.calls: list[Call] = []
        self.outages: list[Outage] = []
        self.faults: list[str] = []
        self._lock = threading.Lock()

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)

    def fault(self, description: str) -> None:
        with self._lock:
            self.faults.append(description)

    @contextlib.contextmanager
    def outage(self, what: str, *, api_down: bool = False, grace_s: float = 3.0) -> Iterator[None]:
        """Declare that ``what`` is down for the block (and ``grace_s`` after it, while
        connections are re-established): 503s in that window are expected."""
        start = time.monotonic()
        self.fault(what)
        try:
            yield
        finally:
            with self._lock:
                self.outages.append(Outage(what, start, time.monotonic() + grace_s, api_down))

    def accepted(self) -> list[Call]:
        return [c for c in self.calls if c.status is not None and c.status < 300 and c.execution_id]


class Api:
    """An authenticated client of a real ``serve`` process that records every call."""

    def __init__(self, base_url: str, api_key: str, history: History, timeout_s: float = 30):
        self.history = history
        self.http = httpx.Client(
            base_url=base_url,
            headers={"X-API-Key": api_key},
            timeout=timeout_s,
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50),
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> httpx.Response | None:
        headers = dict(headers or {})
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
        started = time.monotonic()
        call = Call(started, started, method, path, None, idempotency_key=idempotency_key)
        response: httpx.Response | None = None
        try:
            response = self.http.request(method, path, json=json, headers=headers)
        except httpx.TransportError as exc:
            call.error = f"{type(exc).__name__}: {exc}"
        call.ended = time.monotonic()
        if response is not None:
            call.status = response.status_code
            if response.status_code < 300 and path.startswith("/v1/executions:"):
                body = response.json()
                call.execution_id = body.get("execution_id") or body.get("id")
        self.history.record(call)
        return response

    def save(self, name: str, template: str) -> None:
        r = self.request("PUT", f"/v1/prompts/{name}", json={"template_source": template})
        assert r is not None and r.status_code in (200, 201), r.text if r is not None else r

    def execute(
        self,
        prompt: str,
        variables: dict[str, Any],
        *,
        sync: bool = False,
        idempotency_key: str | None = None,
    ) -> httpx.Response | None:
        path = "/v1/executions:run" if sync else "/v1/executions:submit"
        body = {"prompt_name": prompt, "model_name": "gpt-4o-mini", "variables": variables}
        return self.request("POST", path, json=body, idempotency_key=idempotency_key)

    def get(self, execution_id: str) -> dict[str, Any]:
        r = self.http.get(f"/v1/executions/{execution_id}")
        assert r.status_code == 200, r.text
        execution: dict[str, Any] = r.json()
        return execution


# The prompt every fault test uses: each execution names its own stub counter (``k``), so
# provider calls can be counted per execution; ``faults`` carries extra stub directives.
JOB_PROMPT = "job"
JOB_TEMPLATE = "{{ faults }} [[stub key={{ k }}]] job {{ k }}"


def job(faults: str = "", k: str | None = None) -> dict[str, str]:
    """Variables for one execution of :data:`JOB_PROMPT`."""
    return {"faults": faults, "k": k or uuid.uuid4().hex}


# --- the check ------------------------------------------------------------------------------


@dataclass
class LedgerReport:
    test: str
    faults: list[str]
    executions: int = 0
    accepted: int = 0
    requests: int = 0
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    over_called: list[str] = field(default_factory=list)
    bad_responses: list[str] = field(default_factory=list)
    inconsistent: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    retried: int = 0  # executions that needed more than one attempt
    worker_lost: int = 0  # executions the sweeper recovered from a lost worker (from the logs)
    provider_calls: int = 0
    settle_s: float = 0.0
    bound_s: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.duplicated
            or self.stuck
            or self.over_called
            or self.bad_responses
            or self.inconsistent
        )

    def describe(self) -> str:
        lines = [
            f"{self.test}: {self.executions} executions ({self.accepted} accepted of "
            f"{self.requests} requests), settled in {self.settle_s:.1f}s (bound "
            f"{self.bound_s:.0f}s); statuses {self.statuses}; faults: {', '.join(self.faults)}"
        ]
        for name in ("lost", "duplicated", "stuck", "over_called", "bad_responses", "inconsistent"):
            items = getattr(self, name)
            if items:
                lines.append(f"  {name} ({len(items)}): " + "; ".join(items[:10]))
        return "\n".join(lines)


def check_ledger(
    database_url: str,
    history: History,
    *,
    stub_url: str,
    bound_s: float,
    max_attempts: int,
    logs: Callable[[], Iterable[str]] | None = None,
    assert_ok: bool = True,
) -> LedgerReport:
    """Wait up to ``bound_s`` for every execution created since the history began to be
    final, then check the invariants (module docstring). ``logs`` returns the processes'
    log texts (read once settled) for the sweeper's ``execution_recovered`` events.
    Raises AssertionError listing every violation unless ``assert_ok`` is false."""
    report = LedgerReport(history.name, list(history.faults), bound_s=bound_s)
    engine = create_sync_engine(database_url)
    try:
        report.settle_s = _settle(engine, history.since, bound_s)
        rows = _rows(engine, history.since)
    finally:
        engine.dispose()
    stats = stub_stats(stub_url)
    _judge(report, history, rows, stats["calls_by_key"], max_attempts)
    ids = {str(r["id"]) for r in rows}
    texts = logs() if logs is not None else ()
    recovered = {e["execution_id"] for e in log_events(texts, "execution_recovered")}
    report.worker_lost = len(recovered & ids)
    REPORTS.append(report)
    print(report.describe())
    if assert_ok:
        assert report.ok, report.describe()
    return report


def _settle(engine: sa.Engine, since: datetime, bound_s: float) -> float:
    started = time.monotonic()
    query = sa.text(
        "SELECT count(*) FROM executions WHERE status IN ('queued', 'running') "
        "AND created_at >= :since"
    )
    while True:
        try:
            with engine.connect() as conn:
                pending = conn.execute(query, {"since": since}).scalar_one()
        except sa.exc.OperationalError:
            pending = -1  # the database is still coming back
        elapsed = time.monotonic() - started
        if pending == 0 or elapsed > bound_s:
            return elapsed
        time.sleep(0.2)


def _rows(engine: sa.Engine, since: datetime) -> list[dict[str, Any]]:
    query = sa.text(
        "SELECT id, status, execution_mode, attempts, idempotency_key, rendered_prompt, "
        "response_text, error_type, error_message, created_at, started_at, completed_at "
        "FROM executions WHERE created_at >= :since"
    )
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query, {"since": since})]


def _judge(
    report: LedgerReport,
    history: History,
    rows: list[dict[str, Any]],
    calls_by_key: dict[str, int],
    max_attempts: int,
) -> None:
    by_id = {str(r["id"]): r for r in rows}
    report.executions = len(rows)
    report.requests = len(history.calls)
    accepted = history.accepted()
    report.accepted = len({c.execution_id for c in accepted})
    for r in rows:
        report.statuses[r["status"]] = report.statuses.get(r["status"], 0) + 1

    # 1. every accepted request has its row
    for call in accepted:
        if call.execution_id not in by_id:
            report.lost.append(f"{call.method} {call.path} -> {call.status} {call.execution_id}")

    # 2. one execution per idempotency key (rows, and every answer for that key)
    rows_by_key: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        if r["idempotency_key"] is not None:
            rows_by_key[r["idempotency_key"]].add(str(r["id"]))
    for call in accepted:
        if call.idempotency_key is not None:
            rows_by_key[call.idempotency_key].add(str(call.execution_id))
    for key, ids in rows_by_key.items():
        if len(ids) > 1:
            report.duplicated.append(f"key {key!r}: {sorted(ids)}")

    # 3. every execution final within the bound
    for r in rows:
        if r["status"] not in TERMINAL:
            report.stuck.append(f"{r['id']} {r['status']} attempts={r['attempts']}")

    # 4. provider calls per execution <= attempts (executions grouped by their stub key)
    attempts_by_key: dict[str, int] = defaultdict(int)
    ids_by_key: dict[str, list[str]] = defaultdict(list)
    for r in rows:
        key = _stub_key(r["rendered_prompt"])
        if key is not None:
            attempts_by_key[key] += r["attempts"]
            ids_by_key[key].append(str(r["id"]))
    for key, attempts in attempts_by_key.items():
        calls = calls_by_key.get(key, 0)
        report.provider_calls += calls
        if calls > attempts:
            report.over_called.append(f"{ids_by_key[key]}: {calls} calls > {attempts} attempts")

    # 5. no 5xx but 503 in a declared outage; no transport error but while the API is down
    for call in history.calls:
        if call.status is not None and call.status < 500:
            continue
        inside = [o for o in history.outages if o.start <= call.ended and call.started <= o.end]
        if call.status is None:
            if not any(o.api_down for o in inside):
                report.bad_responses.append(f"{call.method} {call.path}: {call.error}")
        elif call.status != 503 or not inside:
            report.bad_responses.append(f"{call.method} {call.path}: HTTP {call.status}")

    # consistency of finished rows
    for r in rows:
        problem = _inconsistency(r, max_attempts)
        if problem:
            report.inconsistent.append(f"{r['id']}: {problem}")
        if r["attempts"] > 1:
            report.retried += 1


def log_events(logs: Iterable[str], event: str) -> list[dict[str, Any]]:
    """The structlog JSON lines named ``event`` in the given log texts."""
    found = []
    for text in logs:
        for line in text.splitlines():
            if event not in line or not line.startswith("{"):
                continue
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if record.get("event") == event:
                    found.append(record)
    return found


def _stub_key(rendered: str | None) -> str | None:
    if not rendered:
        return None
    try:
        directives, _ = parse_directives(rendered)
    except DirectiveError:
        return None
    return directives.get("key")


def _inconsistency(r: dict[str, Any], max_attempts: int) -> str | None:
    status = r["status"]
    if status not in TERMINAL:
        return None
    if r["completed_at"] is None:
        return f"{status} without completed_at"
    if r["attempts"] > max_attempts:
        return f"attempts {r['attempts']} > {max_attempts}"
    if status == "succeeded":
        if r["response_text"] is None:
            return "succeeded without response_text"
        if r["error_type"] not in (None, "truncated"):
            return f"succeeded with error {r['error_type']}"
    if status == "failed" and not r["error_type"]:
        return "failed without error_type"
    if status in ("succeeded", "failed"):
        if r["attempts"] < 1 or r["started_at"] is None:
            return f"{status} but never started (attempts {r['attempts']})"
        if not (r["created_at"] <= r["started_at"] <= r["completed_at"]):
            return "timestamps out of order"
    return None
