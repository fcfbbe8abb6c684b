"""The client cache (SPEC §9.3) against a live ``promptledger serve`` that the tests stop and
restart. Requests are counted on the server's side of the wire, by a counting proxy in front of
the server — never by patching the client."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.test_cli import free_port, start_serve, stop, wait_for_key, wait_healthy

from prompt_ledger.client import (
    AsyncPromptLedger,
    NotFoundError,
    PromptLedger,
    RenderError,
    TransportError,
    ValidationError,
)


def unique(prefix: str = "c.") -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


@dataclass
class Server:
    """One ``promptledger serve`` on a fixed port and data folder, so a restart keeps its data."""

    home: Path
    port: int
    key: str = ""
    proc: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = start_serve(self.home, self.port, {"PROMPTLEDGER_URL": ""})
        self.key = wait_for_key(self.proc)
        assert self.proc.stdout is not None
        stdout = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in stdout], daemon=True).start()
        wait_healthy(self.url)

    def stop(self) -> None:
        stop(self.proc)


@dataclass
class Seen:
    method: str
    path: str
    status: int
    if_none_match: str | None


@dataclass
class CountingProxy:
    """Forwards every request to the server and records what the server answered."""

    upstream: str
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    httpd: ThreadingHTTPServer | None = None

    def start(self) -> None:
        proxy = self
        http = httpx.Client(base_url=self.upstream, timeout=30)

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")
                }
                r = http.request(self.command, self.path, content=body, headers=headers)
                with proxy.lock:
                    proxy.seen.append(
                        Seen(
                            self.command,
                            self.path.split("?")[0],
                            r.status_code,
                            self.headers.get("If-None-Match"),
                        )
                    )
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_PUT = do_POST = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        assert self.httpd is not None
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def resolves(self, name: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == f"/v1/prompts/{name}/resolve"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    s = Server(tmp_path_factory.mktemp("cache") / "data", free_port())
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def proxy(server: Server) -> Iterator[CountingProxy]:
    p = CountingProxy(server.url)
    p.start()
    yield p
    assert p.httpd is not None
    p.httpd.shutdown()


@pytest.fixture
def client(proxy: CountingProxy, server: Server) -> Iterator[PromptLedger]:
    with PromptLedger(proxy.url, server.key) as c:
        yield c


@pytest.fixture
def writer(server: Server) -> Iterator[PromptLedger]:
    """Another client (another process, in production): its saves drop nothing of ``client``."""
    with PromptLedger(server.url, server.key) as c:
        yield c


def wait_until(check: Any, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class TestCaching:
    def test_a_fresh_label_entry_is_served_without_a_request(
        self, client: PromptLedger, proxy: CountingProxy
    ) -> None:
        name = unique()
        client.save_prompt(name, "Hello {{ who }}!")
        first = client.get_prompt(name)
        assert (first.version_number, first.is_fallback, first.label) == (1, False, "active")
        assert first.render({"who": "Ada"}) == "Hello Ada!"
        for _ in range(5):
            assert client.get_prompt(name) == first
        assert len(proxy.resolves(name)) == 1

    def test_a_version_stays_cached_past_the_ttl(
        self, client: PromptLedger, proxy: CountingProxy
    ) -> None:
        name = unique()
        client.save_prompt(name, "v1")
        assert client.get_prompt(name, version=1, cache_ttl_s=0.05).template_source == "v1"
        time.sleep(0.1)
        assert client.get_prompt(name, version=1, cache_ttl_s=0.05).template_source == "v1"
        assert len(proxy.resolves(name)) == 1

    def test_stale_is_served_at_once_and_refreshed_once_per_key_with_304(
        self, client: PromptLedger, proxy: CountingProxy
    ) -> None:
        name = unique()
        client.save_prompt(name, "same")
        client.get_prompt(name, cache_ttl_s=0.2)
        time.sleep(0.3)
        results: list[str | None] = []

        def read() -> None:
            results.append(client.get_prompt(name, cache_ttl_s=0.2).template_source)

        threads = [threading.Thread(target=read) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["same"] * 16
        wait_until(lambda: len(proxy.resolves(name)) == 2)
        time.sleep(0.1)  # nothing else arrives
        first, refresh = proxy.resolves(name)
        assert (first.status, first.if_none_match) == (200, None)
        assert refresh.status == 304
        assert refresh.if_none_match == f'"{client.get_prompt(name).checksum}"'
        # the 304 made the entry fresh again: no request within the ttl
        client.get_prompt(name, cache_ttl_s=0.2)
        assert len(proxy.resolves(name)) == 2

    def test_a_moved_label_is_picked_up_by_the_refresh(
        self, client: PromptLedger, writer: PromptLedger, proxy: CountingProxy
    ) -> None:
        name = unique()
        client.save_prompt(name, "old")
        client.get_prompt(name, cache_ttl_s=0.1)
        writer.save_prompt(name, "new")  # another client: nothing dropped here
        assert client.get_prompt(name, cache_ttl_s=0.1).template_source == "old"
        time.sleep(0.15)
        assert client.get_prompt(name, cache_ttl_s=0.1).template_source == "old"  # stale, at once
        wait_until(lambda: len(proxy.resolves(name)) == 2)
        wait_until(lambda: client.get_prompt(name, cache_ttl_s=0.1).template_source == "new")
        assert [s.status for s in proxy.resolves(name)][:2] == [200, 200]

    def test_ttl_zero_sends_every_time_and_keeps_nothing(
        self, client: PromptLedger, proxy: CountingProxy
    ) -> None:
        name = unique()
        client.save_prompt(name, "x")
        for _ in range(3):
            assert client.get_prompt(name, cache_ttl_s=0).template_source == "x"
        assert len(proxy.resolves(name)) == 3
        assert len(client._ops.cache) == 0

    def test_saving_and_activating_through_the_client_drop_the_entry(
        self, client: PromptLedger, proxy: CountingProxy
    ) -> None:
        name = unique()
        client.save_prompt(name, "one")
        assert client.get_prompt(name).template_source == "one"
        assert client.get_prompt(name, version=1).template_source == "one"
        client.save_prompt(name, "two")
        assert client.get_prompt(name).template_source == "two"
        client.activate_version(name, 1)
        assert client.get_prompt(name).template_source == "one"
        assert len(proxy.resolves(name)) == 4  # label 3 times, version 1 once (immutable)
        assert client.get_prompt(name, version=1).template_source == "one"
        assert len(proxy.resolves(name)) == 4

    def test_registering_code_drops_the_entry(self, client: PromptLedger) -> None:
        name = unique("Code.")
        client.register_prompts({name: "a"})
        assert client.get_prompt(name).template_source == "a"
        client.register_prompts({name: "b"})
        assert client.get_prompt(name).template_source == "b"

    def test_errors_are_raised_not_cached(self, client: PromptLedger) -> None:
        name = unique()
        with pytest.raises(NotFoundError):
            client.get_prompt(name, fallback="not for a 404")
        client.save_prompt(name, "draft", activate=False)
        with pytest.raises(NotFoundError, match="no active version"):
            client.get_prompt(name)
        with pytest.raises(NotFoundError):
            client.get_prompt(name, label="production")
        with pytest.raises(ValidationError):
            client.get_prompt(name, label="active", version=1)
        assert client.get_prompt(name, version=1).template_source == "draft"

    def test_render_is_sandboxed_and_strict(self, client: PromptLedger) -> None:
        name = unique()
        client.save_prompt(name, "{{ who }} {{ ''.__class__.__mro__ }}")
        prompt = client.get_prompt(name)
        with pytest.raises(RenderError):
            prompt.render({"who": "x"})
        client.save_prompt(name, "Hi {{ who }}")
        with pytest.raises(RenderError, match="who"):
            client.get_prompt(name).render({})


class TestAsync:
    async def test_one_refresh_task_per_key(self, proxy: CountingProxy, server: Server) -> None:
        name = unique()
        async with AsyncPromptLedger(proxy.url, server.key) as aclient:
            await aclient.save_prompt(name, "a {{ x }}")
            await aclient.get_prompt(name, cache_ttl_s=0.1)
            await asyncio.sleep(0.15)
            got = await asyncio.gather(
                *[aclient.get_prompt(name, cache_ttl_s=0.1) for _ in range(20)]
            )
            assert {p.template_source for p in got} == {"a {{ x }}"}
        # aclose waited for the refresh
        assert [s.status for s in proxy.resolves(name)] == [200, 304]


class TestOutage:
    """The server is stopped, then started again on the same port and data."""

    def test_cache_fallback_and_errors_through_an_outage(self, server: Server) -> None:
        cached, other = unique(), unique()
        with (
            PromptLedger(server.url, server.key, timeout=2) as client,
            PromptLedger(server.url, server.key, timeout=2) as nocache,
        ):
            client.save_prompt(cached, "Hello {{ who }}!")
            client.get_prompt(cached, cache_ttl_s=0.1)
            client.get_prompt(cached, version=1)
            nocache.get_prompt(cached, cache_ttl_s=0)
            server.stop()
            try:
                time.sleep(0.2)  # the label entry is stale now, and the server is gone
                for _ in range(3):
                    served = client.get_prompt(cached, cache_ttl_s=0.1)
                    assert (served.is_fallback, served.version_number) == (False, 1)
                    assert served.render({"who": "Ada"}) == "Hello Ada!"
                assert client.get_prompt(cached, version=1).template_source == "Hello {{ who }}!"

                fallback = client.get_prompt(other, fallback="Hi {{ who }} (offline)")
                assert fallback.is_fallback and fallback.version is None
                assert fallback.render({"who": "Bo"}) == "Hi Bo (offline)"
                messages = client.get_prompt(
                    other, fallback=[{"role": "system", "content": "Be {{ tone }}."}]
                )
                assert messages.is_fallback
                assert messages.render({"tone": "brief"}) == [
                    {"role": "system", "content": "Be brief."}
                ]
                with pytest.raises(TransportError):
                    client.get_prompt(other)
                with pytest.raises(TransportError):  # ttl 0: nothing kept, nothing served
                    nocache.get_prompt(cached, cache_ttl_s=0)
                with pytest.raises(TransportError):
                    client.get_prompt(cached, cache_ttl_s=0)
            finally:
                server.start()
            # back: the fallback was not cached, and the stale entry revalidates
            with pytest.raises(NotFoundError):  # reachable again: a 404 is not an outage
                client.get_prompt(other, fallback="x")
            client.save_prompt(cached, "Hello again {{ who }}!")
            assert client.get_prompt(cached).version_number == 2

    async def test_async_client_serves_the_cache_and_fallback(self, server: Server) -> None:
        name = unique()
        async with AsyncPromptLedger(server.url, server.key, timeout=2) as aclient:
            await aclient.save_prompt(name, "A {{ x }}")
            await aclient.get_prompt(name, cache_ttl_s=0.1)
            server.stop()
            try:
                await asyncio.sleep(0.2)
                assert (await aclient.get_prompt(name, cache_ttl_s=0.1)).render({"x": 1}) == "A 1"
                fb = await aclient.get_prompt(unique(), fallback="F")
                assert fb.is_fallback
                with pytest.raises(TransportError):
                    await aclient.get_prompt(unique())
            finally:
                server.start()
