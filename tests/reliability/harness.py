"""Real processes for the reliability suite, each one killable on purpose.

Everything here is a separate OS process started from the test, configured through its
environment only (as in a container) and logging to its own file:

* ``promptledger serve`` (uvicorn) — :class:`ServeProcess`
* ``promptledger worker`` (Celery, solo pool) — :class:`WorkerProcess`
* ``redis-server`` without persistence on a private port — :class:`RedisProcess`
* a private PostgreSQL cluster (``initdb`` in a temp folder, own port) — :class:`PrivatePostgres`
* the OpenAI-compatible stub — started with ``stub_provider.serve_in_subprocess``

Every wait is bounded, every process is stopped in teardown, and only the processes started
here are ever signalled (by pid).
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis
import sqlalchemy as sa

from prompt_ledger.db import migrate
from prompt_ledger.scripts.seed_models import seed

API_KEY = "pl_reliability_key_5c1f9a0e7d3b"
PROVIDER_KEY = "sk-reliability-provider-key-9e2d41"
QUEUE = "promptledger"

# Settings the children must not inherit from the test process.
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
    "RENDER_",
    "MAX_REQUEST_BYTES",
    "DEBUG",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def clean_env(**config: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
    env.update(PYTHONUNBUFFERED="1", **config)
    return env


def wait_for(condition: object, what: str, timeout_s: float, interval_s: float = 0.05) -> None:
    """Poll ``condition()`` until it is true; AssertionError naming ``what`` on timeout."""
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if condition():
                return
        except (httpx.HTTPError, redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)


# --- generic subprocess -------------------------------------------------------------------


class Process:
    """A child process whose stdout and stderr go to one log file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], folder: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.folder = folder
        self.log_path = folder / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        assert not self.running, f"{self.name} is already running"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=self.env, cwd=self.folder, stdout=log, stderr=subprocess.STDOUT
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup of any kind runs in the child."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 30, *, signal_sent: bool = False) -> float:
        """SIGTERM (graceful; once: a second one would mean something else to Celery),
        SIGKILL if it has not exited in time; returns the seconds it took."""
        started = time.monotonic()
        if self.running:
            assert self.proc is not None
            if not signal_sent:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return time.monotonic() - started

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def rss_kib(self) -> int:
        """Resident memory of the process now (``VmRSS``), in KiB."""
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) if match else 0


class ServeProcess(Process):
    """``promptledger serve`` on a fixed port (kept across restarts, so clients keep working)."""

    def __init__(self, name: str, env: dict[str, str], folder: Path, port: int) -> None:
        argv = [sys.executable, "-m", "prompt_ledger.cli", "serve", "--port", str(port)]
        super().__init__(name, argv, env, folder)
        self.port = port
        self.base_url = f"http://127.0.0.1:{port}"

    def wait_healthy(self, timeout_s: float = 60) -> None:
        def healthy() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            return httpx.get(f"{self.base_url}/health", timeout=1).status_code == 200

        wait_for(healthy, f"{self.name} to answer /health", timeout_s)


class WorkerProcess(Process):
    def __init__(self, name: str, env: dict[str, str], folder: Path, loglevel: str = "INFO"):
        argv = [sys.executable, "-m", "prompt_ledger.cli", "worker", f"--loglevel={loglevel}"]
        super().__init__(name, argv, env, folder)

    def wait_ready(self, timeout_s: float = 60) -> None:
        def ready() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            return " ready." in self.output()

        wait_for(ready, f"{self.name} to be ready", timeout_s)


# --- redis --------------------------------------------------------------------------------


class RedisProcess:
    """``redis-server`` with persistence off: a restart loses every message."""

    def __init__(self, folder: Path) -> None:
        self.port = free_port()
        self.folder = folder
        self.proc: Process | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, db: int = 0) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, db=db, socket_timeout=5)

    def start(self) -> None:
        argv = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = Process("redis", argv, clean_env(), self.folder)
        self.proc.start()
        wait_for(lambda: self.client().ping(), "redis-server to answer PING", 10)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate(timeout_s=10)

    def restart(self, down_s: float = 0.0) -> None:
        """Stop (everything queued is lost: no persistence), stay down, start again."""
        self.stop()
        time.sleep(down_s)
        self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.running


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_bindir() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).resolve().parent
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(candidates[-1]).parent if candidates else None


class PrivatePostgres:
    """A PostgreSQL cluster of our own (``initdb`` in a temp folder, a free port, TCP only),
    so a test can stop and start it without touching the machine's server on 5432.

    PostgreSQL refuses to run as root; as root the cluster belongs to the ``postgres`` user.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.bindir = _pg_bindir()
        self.root = Path(tempfile.mkdtemp(prefix="pl-reliability-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def why_unavailable(self) -> str | None:
        if self.bindir is None or not (self.bindir / "initdb").exists():
            return "no initdb/pg_ctl on this machine"
        if os.geteuid() == 0:
            if shutil.which("runuser") is None:
                return "running as root without runuser"
            try:
                import pwd

                pwd.getpwnam("postgres")
            except KeyError:
                return "running as root and there is no 'postgres' user to own the cluster"
        return None

    def _run(self, *argv: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
        command = list(argv)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False, cwd=self.root
        )

    def create(self) -> None:
        assert self.bindir is not None
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        done = self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stdout}{done.stderr}")
        self.start()

    def start(self) -> None:
        assert self.bindir is not None
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''"
        done = self._run(
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {done.stdout}{done.stderr}")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: clients are disconnected, clean shutdown; ``immediate``: like a crash
        (WAL recovery at the next start)."""
        assert self.bindir is not None
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        if self.data.exists():
            with contextlib.suppress(Exception):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        return create_database(self.admin_url, name)


def create_database(admin_url: str, name: str) -> str:
    """A fresh database ``name``, migrated to head with the default models; returns its URL."""
    admin = sa.create_engine(
        sa.make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    migrate.upgrade(url)
    seed(url)
    return url


def drop_database(admin_url: str, name: str) -> None:
    admin = sa.create_engine(
        sa.make_url(admin_url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT"
    )
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


# --- a whole deployment -------------------------------------------------------------------


@dataclass(frozen=True)
class StackConfig:
    """The timings the processes run with (short, so recovery happens within a test)."""

    sweep_interval_s: float = 0.5
    recovery_timeout_s: float = 4.0
    provider_timeout_s: float = 2.0
    retry_delays: tuple[float, ...] = (0.2, 0.4, 0.8)
    render_timeout_s: float = 2.0
    debug: bool = False
    # Each process keeps 2 x this many connections open; several stacks share one server.
    database_pool_size: int = 5

    @property
    def max_attempts(self) -> int:
        return 1 + len(self.retry_delays)

    @property
    def settle_bound_s(self) -> float:
        """The stated bound: once the last fault is repaired, every execution is final
        within this many seconds. A row can wait one sweep to be re-published, lose a worker
        once (recovery timeout), then use every attempt at the provider's full timeout plus
        each retry delay; 10 s of slack covers process start-up on a loaded machine."""
        per_attempt = self.provider_timeout_s + max(self.retry_delays, default=0.0)
        return (
            2 * self.sweep_interval_s
            + self.recovery_timeout_s
            + self.max_attempts * per_attempt
            + 10.0
        )

    def env(self) -> dict[str, str]:
        return {
            "SWEEP_INTERVAL_S": str(self.sweep_interval_s),
            "RECOVERY_TIMEOUT_S": str(self.recovery_timeout_s),
            "PROVIDER_TIMEOUT_S": str(self.provider_timeout_s),
            "EXECUTION_RETRY_DELAYS": ",".join(str(d) for d in self.retry_delays),
            "RENDER_TIMEOUT_S": str(self.render_timeout_s),
            "DEBUG": "true" if self.debug else "false",
            "DATABASE_POOL_SIZE": str(self.database_pool_size),
        }


@dataclass
class Stack:
    """API (``serve``) and Celery workers on one database, one Redis and the stub."""

    folder: Path
    database_url: str
    redis_url: str | None
    stub_url: str
    config: StackConfig = field(default_factory=StackConfig)
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    serve: ServeProcess | None = None
    workers: list[WorkerProcess] = field(default_factory=list)
    _started: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        config = {
            "DATABASE_URL": self.database_url,
            "API_KEY": API_KEY,
            "OPENAI_API_KEY": PROVIDER_KEY,
            "OPENAI_BASE_URL": self.stub_url,
            "PROMPTLEDGER_HOME": str(self.folder / "home"),
            **self.config.env(),
        }
        if self.redis_url:
            config["REDIS_URL"] = self.redis_url
        return clean_env(**config, **self.extra_env)

    def _name(self, kind: str) -> str:
        self._started += 1
        return f"{kind}{self._started}"

    def start_serve(self, *, wait: bool = True) -> ServeProcess:
        assert self.serve is None or not self.serve.running, "serve is already running"
        self.serve = ServeProcess(self._name("serve"), self.env(), self.folder, self.port)
        self.serve.start()
        if wait:
            self.serve.wait_healthy()
        return self.serve

    def start_worker(self, *, wait: bool = True, **env: str) -> WorkerProcess:
        """A ``promptledger worker``; ``env`` adds to (or overrides) the stack's settings."""
        assert self.redis_url, "workers need Redis"
        loglevel = "DEBUG" if self.config.debug else "INFO"
        worker = WorkerProcess(self._name("worker"), {**self.env(), **env}, self.folder, loglevel)
        worker.start()
        self.workers.append(worker)
        if wait:
            worker.wait_ready()
        return worker

    def start_workers(self, count: int) -> list[WorkerProcess]:
        """``count`` more workers, started together (start-up is the slow part)."""
        started = [self.start_worker(wait=False) for _ in range(count)]
        for worker in started:
            worker.wait_ready()
        return started

    def stop_workers(self) -> None:
        """SIGTERM every live worker at once, and wait for each warm shutdown."""
        live = self.live_workers
        for worker in live:
            assert worker.proc is not None
            worker.proc.terminate()
        for worker in live:
            worker.terminate(signal_sent=True)

    def start(self, workers: int = 1) -> Stack:
        """serve and ``workers`` workers, started together."""
        self.start_serve(wait=False)
        started = [self.start_worker(wait=False) for _ in range(workers)]
        assert self.serve is not None
        self.serve.wait_healthy()
        for worker in started:
            worker.wait_ready()
        return self

    @property
    def live_workers(self) -> list[WorkerProcess]:
        return [w for w in self.workers if w.running]

    def processes(self) -> list[Process]:
        every: list[Process] = list(self.workers)
        if self.serve is not None:
            every.append(self.serve)
        return every

    def logs(self) -> dict[str, str]:
        """Every log this stack's processes wrote, including those of stopped ones."""
        return {p.name: p.read_text(errors="replace") for p in self.folder.glob("*.log")}

    def stop(self) -> None:
        self.stop_workers()
        for process in self.processes():
            process.terminate(timeout_s=20)


@contextlib.contextmanager
def running_stack(
    folder: Path,
    database_url: str,
    redis_url: str | None,
    stub_url: str,
    *,
    config: StackConfig | None = None,
    workers: int = 1,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    folder.mkdir(parents=True, exist_ok=True)
    stack = Stack(
        folder, database_url, redis_url, stub_url, config or StackConfig(), dict(extra_env or {})
    )
    try:
        stack.start(workers=workers)
        yield stack
    finally:
        stack.stop()
