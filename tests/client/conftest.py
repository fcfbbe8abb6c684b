"""Client fixtures: the real app in-process (both backends) and a real `promptledger serve`.

* ``aclient`` — :class:`AsyncPromptLedger` over ``httpx.ASGITransport`` to an app with its
  lifespan (in-process worker) running; ``app_and_aclient`` also gives the app.
* ``sclient`` — :class:`PromptLedger` over Starlette's ``TestClient`` (an ``httpx.Client``
  that runs the app, lifespan included, in a helper thread).
* ``live_server`` — one ``promptledger serve`` subprocess per session, on SQLite, with the stub
  provider, for the tests that go over real HTTP (the client, the CLI, the docs' examples).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tests.conftest import API_KEY, running_app
from tests.test_cli import free_port, start_serve, stop, wait_for_key, wait_healthy

from prompt_ledger.api.app import create_app
from prompt_ledger.client import AsyncPromptLedger, PromptLedger
from prompt_ledger.config import Settings

BASE = "http://testserver"
MODEL = "gpt-4o-mini"


@pytest.fixture
async def app_and_aclient(settings: Settings) -> AsyncIterator[tuple[FastAPI, AsyncPromptLedger]]:
    async with running_app(settings) as (app, _):
        transport = httpx.ASGITransport(app=app)
        async with AsyncPromptLedger(BASE, API_KEY, transport=transport) as client:
            yield app, client


@pytest.fixture
def aclient(app_and_aclient: tuple[FastAPI, AsyncPromptLedger]) -> AsyncPromptLedger:
    return app_and_aclient[1]


@pytest.fixture
def sclient(settings: Settings) -> Iterator[PromptLedger]:
    # TestClient is an httpx-compatible Client (build_request/send): the sync client takes it.
    with (
        TestClient(create_app(settings), base_url=BASE) as http,
        PromptLedger(BASE, API_KEY, http_client=http) as client,
    ):
        yield client


@dataclass(frozen=True)
class LiveServer:
    url: str
    api_key: str
    home: Path
    output: deque[str]


@pytest.fixture(scope="session")
def live_server(
    tmp_path_factory: pytest.TempPathFactory, stub_server_url: str
) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("live") / "data"
    port = free_port()
    proc = start_serve(
        home,
        port,
        {
            "OPENAI_BASE_URL": stub_server_url,
            "OPENAI_API_KEY": "sk-live-test",
            "EXECUTION_RETRY_DELAYS": "0.05,0.1,0.1",
            "PROMPTLEDGER_URL": "",
            "PROMPTLEDGER_API_KEY": "",
        },
    )
    try:
        key = wait_for_key(proc)
        output: deque[str] = deque(maxlen=200)
        assert proc.stdout is not None
        stdout = proc.stdout

        def drain() -> None:  # a full pipe would block the server's log writes
            for line in stdout:
                output.append(line)

        threading.Thread(target=drain, daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url)
        yield LiveServer(url, key, home, output)
    finally:
        stop(proc)
