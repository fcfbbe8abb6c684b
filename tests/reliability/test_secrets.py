"""Secrets never leave the process that needs them, even at DEBUG.

A representative workload runs against real ``serve`` and ``worker`` processes started with
``DEBUG=true`` (worker at ``--loglevel=DEBUG``). Then every place text ends up is searched for
the API key and the provider key: each process's log, every response (status line, headers,
body), every Redis command the processes sent (``MONITOR``: the Celery messages, decoded) and
every text/JSON column of every table in the database.
"""

from __future__ import annotations

import base64
import re
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from tests.reliability.harness import (
    API_KEY,
    PROVIDER_KEY,
    QUEUE,
    RedisProcess,
    StackConfig,
    running_stack,
    wait_for,
)

from prompt_ledger.api import deps
from prompt_ledger.db.session import create_sync_engine
from prompt_ledger.errors import Unauthorized

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

OFFERED_WRONG_KEY = "pl_someone_elses_key_0d4c7a2b91"
SECRETS = {"API key": API_KEY, "provider key": PROVIDER_KEY}


def fragments(secret: str) -> list[str]:
    """The secret and a long middle piece of it (catches a key printed cut or masked badly)."""
    return [secret, secret[4:-4]]


class RedisMonitor:
    """Every command the Redis server receives, via ``MONITOR``, on a thread."""

    def __init__(self, server: RedisProcess) -> None:
        self.server = server
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        client = redis.Redis(host="127.0.0.1", port=self.server.port)
        with client.monitor() as monitor:
            self._ready.set()
            while not self._stop.is_set():
                try:
                    self.lines.append(monitor.next_command()["command"])
                except redis.ConnectionError:
                    break

    def __enter__(self) -> RedisMonitor:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self.server.client().ping()  # one more command, so the blocked read returns
        self._thread.join(timeout=10)

    def texts(self) -> list[str]:
        """The raw commands, plus every Celery message body they carried, decoded."""
        return self.lines + self.message_bodies()

    def message_bodies(self) -> list[str]:
        bodies = []
        for line in self.lines:
            for encoded in re.findall(r'"body": "([A-Za-z0-9+/=]+)"', line):
                bodies.append(base64.b64decode(encoded).decode(errors="replace"))
        return bodies


class Recorder:
    """An HTTP client that keeps every response it got, as text."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, headers={"X-API-Key": API_KEY}, timeout=30)
        self.texts: list[str] = []

    def __call__(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        r = self.http.request(method, path, **kwargs)
        headers = "\n".join(f"{k}: {v}" for k, v in r.headers.items())
        self.texts.append(f"{r.status_code} {method} {path}\n{headers}\n\n{r.text}")
        return r

    def wait(self, execution_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            e: dict[str, Any] = self("GET", f"/v1/executions/{execution_id}").json()
            if e["status"] in ("succeeded", "failed", "canceled"):
                return e
            time.sleep(0.1)
        raise AssertionError(f"{execution_id} did not finish")


def workload(call: Recorder, base_url: str) -> list[str]:
    """Every kind of request, including the ones that make providers and servers talk
    about keys: a provider 401 (whose message quotes the bearer key), wrong API keys."""
    ok = (200, 201, 202)
    assert (
        call("PUT", "/v1/prompts/greet", json={"template_source": "Hi {{ n }}"}).status_code in ok
    )
    call("PUT", "/v1/prompts/unauth", json={"template_source": "{{ d }} [[stub status=401]]"})
    call("PUT", "/v1/prompts/flaky", json={"template_source": "[[stub fail=1 key={{ k }}]] go"})
    call("PUT", "/v1/prompts/slow", json={"template_source": "[[stub delay=5]] slow"})
    run = {"model_name": "gpt-4o-mini"}
    e = call(
        "POST", "/v1/executions:run", json={**run, "prompt_name": "greet", "variables": {"n": "A"}}
    )
    assert e.json()["status"] == "succeeded"
    e = call(
        "POST", "/v1/executions:run", json={**run, "prompt_name": "unauth", "variables": {"d": "x"}}
    )
    assert e.json()["error"]["type"] == "auth_error"
    ids = []
    for prompt, variables in (
        ("greet", {"n": "B"}),
        ("unauth", {"d": "y"}),
        ("flaky", {"k": uuid.uuid4().hex}),
    ):
        body = {**run, "prompt_name": prompt, "variables": variables}
        for _ in range(2):  # an idempotent retry
            r = call(
                "POST", "/v1/executions:submit", json=body, headers={"Idempotency-Key": prompt}
            )
            assert r.status_code == 202, r.text
        ids.append(r.json()["execution_id"])
    for execution_id in ids:
        call.wait(execution_id)
    slow = call("POST", "/v1/executions:submit", json={**run, "prompt_name": "slow"}).json()
    call("POST", f"/v1/executions/{slow['execution_id']}:cancel")
    call(
        "POST",
        "/v1/prompts/register-code",
        json={"prompts": [{"name": "T.X", "template_source": "t {{ v }}"}]},
    )
    call("POST", "/v1/prompts/T.X/execute", json={**run, "variables": {"v": 1}, "mode": "sync"})
    call("POST", "/v1/prompts/T.X/execute", json={**run, "variables": {"v": 2}, "mode": "async"})
    for path in (
        "/v1/prompts",
        "/v1/prompts/greet",
        "/v1/prompts/greet/versions",
        "/v1/prompts/greet/events",
        "/v1/prompts/T.X/history",
        "/v1/executions",
        "/v1/analytics/prompts",
        "/v1/prompts/nope",
        f"/v1/executions/{uuid.uuid4()}",
        "/health",
        "/health/ready",
        "/openapi.json",
        "/metrics",
    ):
        call("GET", path)
    call("POST", "/v1/executions:run", json={**run, "prompt_name": "greet", "variables": {}})
    call("PUT", "/v1/prompts/bad", json={"template_source": "{{ x "})
    for key in (OFFERED_WRONG_KEY, ""):
        call("GET", "/v1/prompts", headers={"X-API-Key": key})
    r = httpx.post(f"{base_url}/v1/executions:run", headers={"Authorization": f"Bearer {API_KEY}"})
    call.texts.append(f"{r.status_code}\n{r.text}")
    return ids


def database_text(database_url: str) -> list[str]:
    """Every text, varchar and JSON value in every table."""
    engine = create_sync_engine(database_url)
    values: list[str] = []
    try:
        with engine.connect() as conn:
            columns = conn.execute(
                sa.text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = 'public' AND data_type IN "
                    "('text', 'character varying', 'json', 'jsonb', 'USER-DEFINED')"
                )
            ).all()
            for table, column in columns:
                rows = conn.execute(sa.text(f'SELECT "{column}"::text FROM "{table}"')).scalars()
                values.extend(v for v in rows if v is not None)
    finally:
        engine.dispose()
    return values


@pytest.fixture
def debug_stack(
    ledger_url: str, reliability_redis: RedisProcess, stub_process: str, tmp_path: Path
) -> Iterator[Any]:
    if not reliability_redis.running:
        reliability_redis.start()
    config = StackConfig(debug=True, retry_delays=(0.1,))
    with running_stack(
        tmp_path / "debug", ledger_url, reliability_redis.url(2), stub_process, config=config
    ) as stack:
        yield stack


def test_no_key_appears_in_logs_responses_messages_or_rows(
    debug_stack: Any, reliability_redis: RedisProcess
) -> None:
    call = Recorder(debug_stack.base_url)
    with RedisMonitor(reliability_redis) as monitor:
        ids = workload(call, debug_stack.base_url)
        wait_for(lambda: reliability_redis.client(2).llen(QUEUE) == 0, "the queue to drain", 30)
    call.http.close()
    debug_stack.stop()  # flush and close every log
    logs = debug_stack.logs()

    places: dict[str, list[str]] = {
        "log": list(logs.values()),
        "response": call.texts,
        "redis command": monitor.texts(),
        "database row": database_text(debug_stack.database_url),
    }
    # The places are not empty: DEBUG logging really ran, messages really went through Redis.
    assert any("DEBUG/MainProcess" in text for text in logs.values())
    assert sum(len(t) for t in logs.values()) > 10_000
    assert any(QUEUE in line for line in monitor.lines)
    assert any("promptledger.execute" in text for text in places["redis command"])
    bodies = monitor.message_bodies()
    assert any(execution_id in body for body in bodies for execution_id in ids)
    assert len(call.texts) >= 30
    assert len(places["database row"]) >= 50

    leaks = [
        f"{what} in a {place}: ...{text[max(0, text.find(piece) - 80) : text.find(piece) + 40]!r}"
        for what, secret in SECRETS.items()
        for piece in fragments(secret)
        for place, texts in places.items()
        for text in texts
        if piece in text
    ]
    assert not leaks, "\n".join(leaks[:20])
    # A key someone offered and that was refused is somebody's secret too.
    assert not [
        place for place, texts in places.items() if any(OFFERED_WRONG_KEY in t for t in texts)
    ]


async def test_api_keys_are_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every configured key is compared (no early exit), as fixed-size digests, through
    ``hmac.compare_digest``: timing tells neither which key matched nor how much of one."""
    compared: list[tuple[int, int]] = []
    real = deps.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(deps.hmac, "compare_digest", spy)
    state = SimpleNamespace(api_key_digests=deps.key_digests(["first-key", "second-key-longer"]))
    await deps.require_api_key(state, "first-key", None)  # type: ignore[arg-type]
    assert compared == [(32, 32), (32, 32)]
    compared.clear()
    for offered in ("x", "first-ke", "f" * 10_000):
        with pytest.raises(Unauthorized):
            await deps.require_api_key(state, offered, None)  # type: ignore[arg-type]
    assert compared == [(32, 32)] * 6
