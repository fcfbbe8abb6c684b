"""The production topology on one machine, without containers: N ``promptledger serve``
processes and M ``promptledger worker`` processes on one PostgreSQL and one Redis.

``make stack`` runs it for a human (``python -m prompt_ledger.testing.stack --help``);
``tests/ops/test_topology.py`` runs the same class and drives traffic through it.

Every process gets its configuration from the environment only (as in a container), and its
own log file in the stack's folder. Each process runs in its own process group, so stopping
the stack also stops the uvicorn worker processes an API spawned.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import httpx
import sqlalchemy as sa

# Variables the children must not inherit from whoever started the stack.
_CONFIG_PREFIXES = (
    "PROMPTLEDGER_",
    "PROMETHEUS_MULTIPROC_DIR",
    "DATABASE_URL",
    "REDIS_URL",
    "API_KEY",
    "OPENAI_",
    "PROVIDER_",
    "EXECUTION_",
    "RECOVERY_",
    "SWEEP_",
    "DEBUG",
)
DEFAULT_DATABASE = "postgresql://postgres@127.0.0.1:5432/promptledger_stack"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def ensure_database(url: str) -> None:
    """Create the PostgreSQL database ``url`` names if it does not exist yet."""
    target = sa.make_url(url)
    admin = sa.create_engine(
        target.set(drivername="postgresql+psycopg", database="postgres"),
        isolation_level="AUTOCOMMIT",
    )
    try:
        with admin.connect() as conn:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :name"),
                {"name": target.database},
            )
            if not exists:
                conn.execute(sa.text(f'CREATE DATABASE "{target.database}"'))
    finally:
        admin.dispose()


@dataclass
class Process:
    """One child process; its stdout and stderr go to ``<name>.out`` and ``<name>.err``
    (kept apart: JSON log lines on stderr never interleave with Celery's stdout)."""

    name: str
    command: list[str]
    folder: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def out_path(self) -> Path:
        return self.folder / f"{self.name}.out"

    @property
    def err_path(self) -> Path:
        return self.folder / f"{self.name}.err"

    def start(self) -> None:
        with self.out_path.open("ab") as out, self.err_path.open("ab") as err:
            self.proc = subprocess.Popen(  # noqa: S603 (our interpreter and modules, no shell)
                self.command,
                env=self.env,
                cwd=self.folder,  # no stray .env is read
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own process group: uvicorn's children included
            )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr(self) -> str:
        return self.err_path.read_text(errors="replace") if self.err_path.exists() else ""

    def log(self) -> str:
        out = self.out_path.read_text(errors="replace") if self.out_path.exists() else ""
        return out + self.stderr()

    def signal_group(self, signum: int) -> None:
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signum)

    def wait(self, timeout_s: float) -> None:
        """Wait for the process; SIGKILL its group if it is still there after ``timeout_s``."""
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.signal_group(signal.SIGKILL)
            self.proc.wait(timeout=10)
        self.signal_group(signal.SIGKILL)  # leftovers of the group, if any


@dataclass
class Stack:
    """Redis (a private ``redis-server`` unless ``redis_url`` is given), APIs and workers.

    ``api_processes`` gives, per API, its ``serve --workers`` count; an API with more than one
    gets its own ``PROMETHEUS_MULTIPROC_DIR`` so /metrics adds up all of its processes.
    """

    database_url: str
    provider_url: str
    provider_key: str
    folder: Path
    api_ports: Sequence[int]
    workers: int = 2
    api_processes: Sequence[int] = ()
    api_key: str = field(default_factory=lambda: "pl_" + secrets.token_urlsafe(24))
    redis_url: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    processes: list[Process] = field(default_factory=list)
    _redis: Process | None = None

    @property
    def api_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{port}" for port in self.api_ports]

    @property
    def apis(self) -> list[Process]:
        return [p for p in self.processes if p.name.startswith("api")]

    @property
    def worker_processes(self) -> list[Process]:
        return [p for p in self.processes if p.name.startswith("worker")]

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
        assert self.redis_url is not None
        env.update(
            DATABASE_URL=self.database_url,
            REDIS_URL=self.redis_url,
            API_KEY=self.api_key,
            OPENAI_API_KEY=self.provider_key,
            OPENAI_BASE_URL=self.provider_url,
            PROMPTLEDGER_HOME=str(self.folder / "home"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.redis_url is None:
            self._start_redis()
        per_api = list(self.api_processes) or [1] * len(self.api_ports)
        for i, (port, count) in enumerate(zip(self.api_ports, per_api, strict=True)):
            env = self._env()
            if count > 1:
                metrics_dir = self.folder / f"api{i}-metrics"
                shutil.rmtree(metrics_dir, ignore_errors=True)  # stale files add old counts
                metrics_dir.mkdir()
                env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
            command = [sys.executable, "-m", "prompt_ledger.cli", "serve"]
            command += ["--host", "127.0.0.1", "--port", str(port), "--workers", str(count)]
            self._spawn(f"api{i}", command, env)
        for i in range(self.workers):
            command = [sys.executable, "-m", "prompt_ledger.cli", "worker", "--loglevel=INFO"]
            self._spawn(f"worker{i}", command, self._env())
        self.wait_ready()

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> None:
        process = Process(name, command, self.folder, env)
        process.start()
        self.processes.append(process)

    def _start_redis(self) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not on PATH: install it or pass a Redis URL")
        port = free_port()
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1"]
        command += ["--save", "", "--appendonly", "no"]
        self._redis = Process("redis", command, self.folder, dict(os.environ))
        self._redis.start()
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                return
            if not self._redis.running or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start:\n{self._redis.log()}")
            time.sleep(0.02)

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Every API answers /health/ready (database and Redis up); every process alive."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.api_urls)
        while pending:
            for process in self.processes:
                if not process.running:
                    raise RuntimeError(f"{process.name} exited:\n{process.log()[-4000:]}")
            url = pending[0]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health/ready", timeout=1).status_code == 200:
                    pending.pop(0)
                    continue
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {timeout_s:.0f}s")
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM everyone at once (warm shutdown: workers finish in-flight calls), then wait."""
        for process in self.processes:
            process.signal_group(signal.SIGTERM)
        for process in self.processes:
            process.wait(STOP_TIMEOUT_S)
        if self._redis is not None:
            self._redis.signal_group(signal.SIGTERM)
            self._redis.wait(10)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def _provider(use_stub: bool) -> Iterator[tuple[str, str]]:
    if not use_stub:
        base_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
        yield base_url, os.environ["OPENAI_API_KEY"]
        return
    from prompt_ledger.testing.stub_provider import serve_in_thread

    with serve_in_thread() as url:
        yield url, "stub-key"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Run 2 API processes and 2 workers on PostgreSQL and a private Redis."
    )
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL", DEFAULT_DATABASE))
    parser.add_argument("--redis-url", default=None, help="default: start a private redis-server")
    parser.add_argument("--ports", default="8000,8001", help="one API per port")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--stub",
        action=argparse.BooleanOptionalAction,
        default="OPENAI_API_KEY" not in os.environ,
        help="use the bundled stub provider (default when OPENAI_API_KEY is unset)",
    )
    parser.add_argument("--folder", type=Path, default=None, help="logs (default: a temp folder)")
    args = parser.parse_args(argv)

    if sa.make_url(args.database_url).get_backend_name() != "postgresql":
        parser.error("the stack needs PostgreSQL (several processes share the database)")
    # Ctrl-C and `kill` both stop every process the stack started (also when started in the
    # background, where SIGINT arrives ignored).
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    ensure_database(args.database_url)
    folder = args.folder or Path(tempfile.mkdtemp(prefix="promptledger-stack-"))
    ports = [int(p) for p in args.ports.split(",")]
    with _provider(args.stub) as (provider_url, provider_key):
        stack = Stack(
            database_url=args.database_url,
            provider_url=provider_url,
            provider_key=provider_key,
            folder=folder,
            api_ports=ports,
            workers=args.workers,
            redis_url=args.redis_url,
            api_key=os.environ.get("API_KEY") or "pl_" + secrets.token_urlsafe(24),
        )
        with stack:
            print(f"PromptLedger stack up: {len(ports)} APIs, {args.workers} workers")
            for url in stack.api_urls:
                print(f"  API      {url}  (docs {url}/docs, metrics {url}/metrics)")
            print(f"  database {args.database_url}")
            print(f"  redis    {stack.redis_url}")
            print(f"  provider {provider_url}{'  (stub)' if args.stub else ''}")
            print(f"  logs     {folder}")
            if "API_KEY" in os.environ:
                print("API key: the value of API_KEY")  # the operator's secret: not echoed
            else:
                print(f"API key: {stack.api_key}")
            print("Ctrl-C stops everything.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while all(p.running for p in stack.processes):
                    time.sleep(0.5)
                for process in stack.processes:
                    if not process.running:
                        print(f"{process.name} exited; see {process.err_path}", file=sys.stderr)
            print("stopping ...", flush=True)


if __name__ == "__main__":
    main()
