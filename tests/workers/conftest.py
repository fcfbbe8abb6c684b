"""Fixtures of the worker tests: a private ``redis-server`` per test module (no persistence),
which a test may stop, freeze and start again without touching anyone else's Redis."""

from __future__ import annotations

import base64
import json
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from tests.conftest import service_unavailable

from prompt_ledger.workers.celery_app import QUEUE

# --- a private redis-server ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` without persistence on a fixed port; stop() and start() again at will."""

    def __init__(self, port: int, log_path: Path) -> None:
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(self.port),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--bind",
                    "127.0.0.1",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return
            except redis.ConnectionError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start: {self.log_path.read_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.thaw()  # a frozen process would not act on SIGTERM
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def freeze(self) -> None:
        """SIGSTOP: the kernel still accepts connections and buffers commands, nothing answers
        (a hung broker, not a refused one)."""
        assert self.proc is not None and self.proc.poll() is None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=5)

    def queued_messages(self) -> list[bytes]:
        messages: list[bytes] = self.client().lrange(QUEUE, 0, -1)
        return messages

    def queued_execution_ids(self) -> list[str]:
        """The execution ids in the queue's messages (kombu JSON envelope, base64 body)."""
        ids = []
        for message in self.queued_messages():
            args, _, _ = json.loads(base64.b64decode(json.loads(message)["body"]))
            ids.extend(args)
        return ids

    def in_flight(self) -> int:
        """Messages waiting in the queue plus those a worker took but has not acked."""
        r = self.client()
        return int(r.llen(QUEUE)) + int(r.hlen("unacked"))


@contextmanager
def running_redis_server(folder: Path) -> Iterator[RedisServer]:
    """A private redis-server on a free port, stopped on exit (skipped if not installed)."""
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server", "not on PATH")
    server = RedisServer(free_port(), folder / "redis.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with running_redis_server(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture
def private_redis(redis_server: RedisServer) -> RedisServer:
    """The module's Redis, running and with no message left over from an earlier test."""
    if not redis_server.running:
        redis_server.start()
    redis_server.thaw()
    redis_server.client().delete(QUEUE, "unacked", "unacked_index")
    return redis_server
