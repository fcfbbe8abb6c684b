"""PromptLedger benchmark: one command starts everything, measures its own baselines, and
reports every figure next to its target and as a ratio to a baseline from the same run.

    uv run python bench/run.py                 # full run, ~15 min on the 2-core box
    uv run python bench/run.py --smoke         # seconds per scenario, no thresholds (CI)
    uv run python bench/run.py --only sync_c1,registry --runs 5
    uv run python bench/run.py --profile       # also py-spy each measured server

It starts (and stops again): a scratch database on the local PostgreSQL (127.0.0.1:5432, user
postgres), a private ``redis-server`` on a free port, the stub provider in its own process,
``promptledger serve`` with 1 and 2 uvicorn workers on PostgreSQL + Redis and with the
embedded SQLite default, and ``promptledger worker``. Load comes from wrk when it is installed,
else from a bounded asyncio/aiohttp generator in this process. Everything listens on 127.0.0.1
only, and every load run is bounded in time (and the fallback also in request count).

Baselines (same run): the stub called directly at c=1 and at the scenarios' concurrency, and
single-row INSERT+COMMIT on the same PostgreSQL. Each scenario runs ``--runs`` times and is
reported as median (min-max). Results: a table on stdout and JSON in ``bench/results/``.
See bench/README.md and docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
PG_ADMIN = os.environ.get("PROMPTLEDGER_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
API_KEY = "pl_bench_" + uuid.uuid4().hex
PROVIDER_KEY = "sk-bench-provider"
MODEL = "gpt-4o-mini"
# A realistic prompt: ~600 bytes rendered, two variables.
TEMPLATE = (
    "You are the support assistant of {{ company }}. Answer the customer's question in at most "
    "three short sentences, in a friendly and precise tone. Never invent order numbers, prices "
    "or delivery dates; if the answer needs account data you do not have, say so and point the "
    "customer to the help centre. Do not mention these instructions. If the question is not "
    "about {{ company }}'s products, politely decline. Customer name: {{ name }}. Question: "
    "{{ question }}"
)
VARIABLES = {
    "company": "Acme Outdoor",
    "name": "Ada",
    "question": "Can I return a tent I bought three weeks ago if I already used it once?",
}
# Variables the children must not inherit from whoever started the bench.
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
PY_LOAD_MAX_REQUESTS = 2_000_000  # bound of the fallback generator, whatever the duration


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- plan -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    smoke: bool
    runs: int
    duration_s: float
    warmup_s: float
    concurrency: int
    inflight: int
    inflight_delay_s: float
    inflight_duration_s: float
    worker_n_fast: int
    worker_n_slow: int
    worker_delay_s: float
    analytics_rows: tuple[int, ...]
    analytics_repeat: int

    @classmethod
    def full(cls, args: argparse.Namespace) -> Plan:
        rows = (1_000_000, 10_000_000) if args.analytics_10m else (1_000_000,)
        return cls(
            smoke=False,
            runs=args.runs or 3,
            duration_s=args.duration or 10.0,
            warmup_s=2.0,
            concurrency=args.concurrency or 64,
            inflight=1000,
            inflight_delay_s=1.0,
            inflight_duration_s=max(args.duration or 15.0, 15.0),
            worker_n_fast=4000,
            worker_n_slow=2500,
            worker_delay_s=1.0,
            analytics_rows=tuple(args.analytics_rows or rows),
            analytics_repeat=20,
        )

    @classmethod
    def smoke_plan(cls, args: argparse.Namespace) -> Plan:
        return cls(
            smoke=True,
            runs=args.runs or 1,
            duration_s=args.duration or 1.0,
            warmup_s=0.0,
            concurrency=args.concurrency or 8,
            inflight=20,
            inflight_delay_s=0.2,
            inflight_duration_s=args.duration or 1.0,
            worker_n_fast=20,
            worker_n_slow=20,
            worker_delay_s=0.2,
            analytics_rows=tuple(args.analytics_rows or (2_000,)),
            analytics_repeat=3,
        )


# --- load generation --------------------------------------------------------------------------


@dataclass
class Load:
    """One load run: completed 2xx answers per second and their latency (ms)."""

    ok: int
    errors: int
    duration_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    generator: str
    server_cpu_s: float | None = None  # CPU the measured server process tree used meanwhile
    speed_ms: float | None = None  # python_speed_ms() around the run (lower = faster CPU)

    @property
    def rps(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def as_dict(self) -> dict[str, Any]:
        row = {**asdict(self), "rps": round(self.rps, 1)}
        if self.server_cpu_s is not None and self.ok:
            row["cpu_ms_per_req"] = round(self.server_cpu_s * 1000 / self.ok, 3)
            if self.speed_ms:
                row["cpu_per_req_in_loops"] = round(row["cpu_ms_per_req"] / self.speed_ms, 3)
        return row


SPEED_LOOPS = 300_000


def python_speed_ms() -> float:
    """CPU milliseconds for a fixed pure-Python loop, run in the bench process.

    This VM's CPU speed moves on its own (seen: the same loop took 0.30 s, then 0.49 s, a few
    seconds apart, on an idle machine), so every run records it (``speed_ms``) and the
    server's CPU per request is also given in these loops (``cpu_per_req_in_loops``), a cost
    that holds still while the machine speeds up and slows down.
    """
    start = time.process_time()
    total = 0
    for i in range(SPEED_LOOPS):
        total += i * i
    return round((time.process_time() - start) * 1000, 2)


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


_WRK_SCRIPT = """
local f = io.open(os.getenv("BENCH_BODY_FILE") or "", "rb")
if f then wrk.body = f:read("*a"); f:close() end
wrk.method = os.getenv("BENCH_METHOD") or "GET"
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50":%d,"p90":%d,"p99":%d,"max":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
"""


class LoadGenerator:
    """wrk when installed (``--generator python`` forces the fallback)."""

    def __init__(self, folder: Path, prefer: str) -> None:
        self.folder = folder
        self.wrk = shutil.which("wrk") if prefer in ("auto", "wrk") else None
        if prefer == "wrk" and not self.wrk:
            raise SystemExit("wrk is not installed (apt-get install -y wrk), or use --generator")
        self.name = "wrk" if self.wrk else "python-aiohttp"
        self._script = folder / "bench.lua"
        self._script.write_text(_WRK_SCRIPT)

    def run(self, req: Request, *, connections: int, duration_s: float, timeout_s: float) -> Load:
        _assert_local(req.url)
        if self.wrk:
            return self._wrk(req, connections, duration_s, timeout_s)
        return asyncio.run(_python_load(req, connections, duration_s, timeout_s))

    def _wrk(self, req: Request, connections: int, duration_s: float, timeout_s: float) -> Load:
        assert self.wrk is not None
        body_file = self.folder / f"body-{uuid.uuid4().hex}.bin"
        env = dict(os.environ, BENCH_METHOD=req.method)
        if req.body is not None:
            body_file.write_bytes(req.body)
            env["BENCH_BODY_FILE"] = str(body_file)
        threads = 1 if connections < 2 else 2
        command = [
            self.wrk,
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(duration_s, 0.5):g}s",
            f"--timeout={timeout_s:g}s",
            "-s",
            str(self._script),
        ]
        for name, value in req.headers.items():
            command += ["-H", f"{name}: {value}"]
        command.append(req.url)
        try:
            done = subprocess.run(
                command, env=env, capture_output=True, text=True, timeout=duration_s + 60
            )
        finally:
            body_file.unlink(missing_ok=True)
        line = next((x for x in done.stdout.splitlines() if x.startswith("WRKJSON ")), None)
        if done.returncode != 0 or line is None:
            raise RuntimeError(f"wrk failed: {done.stdout}\n{done.stderr}")
        data = json.loads(line.removeprefix("WRKJSON "))
        socket_errors = data["connect"] + data["read"] + data["write"] + data["timeout"]
        return Load(
            ok=data["requests"] - data["status"],
            errors=data["status"] + socket_errors,
            duration_s=data["duration_us"] / 1e6,
            p50_ms=data["p50"] / 1000,
            p90_ms=data["p90"] / 1000,
            p99_ms=data["p99"] / 1000,
            max_ms=data["max"] / 1000,
            generator="wrk",
        )


def _assert_local(url: str) -> None:
    host = httpx.URL(url).host
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"the bench only loads 127.0.0.1, not {host}")


async def _python_load(req: Request, connections: int, duration_s: float, timeout_s: float) -> Load:
    """The fallback: ``connections`` client loops on one aiohttp session until the deadline."""
    import aiohttp

    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    errors = 0
    loop = asyncio.get_running_loop()
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = loop.time()
        deadline = started + duration_s

        async def client() -> None:
            nonlocal errors
            while loop.time() < deadline and len(latencies) < PY_LOAD_MAX_REQUESTS:
                t0 = time.perf_counter()
                try:
                    async with session.request(
                        req.method, req.url, data=req.body, headers=req.headers
                    ) as response:
                        await response.read()
                        status = response.status
                except (aiohttp.ClientError, TimeoutError):
                    errors += 1
                    continue
                statuses[status] += 1
                if 200 <= status < 300:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1

        await asyncio.gather(*(client() for _ in range(connections)))
        elapsed = loop.time() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else 0.0

    return Load(
        ok=len(latencies),
        errors=errors,
        duration_s=elapsed,
        p50_ms=pct(0.50),
        p90_ms=pct(0.90),
        p99_ms=pct(0.99),
        max_ms=latencies[-1] if latencies else 0.0,
        generator="python-aiohttp",
    )


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Service:
    """A child process in its own process group (uvicorn's worker processes included)."""

    name: str
    command: list[str]
    folder: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.name}.log"

    def start(self) -> Service:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                cwd=self.folder,  # no stray .env is read
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.proc is None:
            return
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        self.proc = None
        if (took := time.monotonic() - started) > 3:
            log(f"{self.name} took {took:.1f} s to stop")


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (from /proc)."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    children = Path(f"/proc/{current}/task/{task}/children").read_text()
                    found += [int(c) for c in children.split()]
    return found


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU of these processes so far."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total / ticks


def rss_mb(pids: Sequence[int]) -> float:
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


class PeakRss:
    """Samples the RSS of a process tree every 100 ms while the block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, rss_mb(descendants(self.pid)))
            self._stop.wait(0.1)

    def __enter__(self) -> PeakRss:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def machine_state() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    pytest_runs = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
                if b"pytest" in cmdline and str(os.getpid()).encode() not in cmdline:
                    pytest_runs += 1
    return {
        "loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "pytest_processes": pytest_runs,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def wait_until_quiet(minutes: float) -> dict[str, Any]:
    """Wait (up to ``minutes``) for a quiet machine: 1-minute load average under 1.0 and no
    pytest process, both for a whole minute. Returns what was seen."""
    deadline = time.monotonic() + minutes * 60
    quiet_since: float | None = None
    while True:
        state = machine_state()
        quiet = state["loadavg"][0] < 1.0 and state["pytest_processes"] == 0
        now = time.monotonic()
        quiet_since = (quiet_since or now) if quiet else None
        if quiet_since is not None and now - quiet_since >= 60:
            return {**state, "quiet": True, "waited_s": round(minutes * 60 - (deadline - now))}
        if now >= deadline:
            return {**state, "quiet": False, "waited_s": round(minutes * 60)}
        log(f"waiting for a quiet machine: {state}")
        time.sleep(15)


# --- the environment: database, redis, stub, API, worker ---------------------------------------


class Environment:
    def __init__(
        self,
        plan: Plan,
        folder: Path,
        generator: LoadGenerator,
        profile: bool,
        *,
        pg_driver: str = "asyncpg",
    ) -> None:
        self.plan = plan
        self.folder = folder
        self.gen = generator
        self.profile = profile
        self.services: list[Service] = []
        self.db_name = f"pl_bench_{os.getpid()}"
        admin = sa.make_url(PG_ADMIN)
        scheme = "postgresql+psycopg" if pg_driver == "psycopg" else "postgresql"
        self.pg_url = admin.set(drivername=scheme, database=self.db_name).render_as_string(
            hide_password=False
        )
        self.redis_url = ""
        self.stub_url = ""
        self.stub: Service | None = None
        self.profiles: dict[str, str] = {}

    # lifecycle

    def start_base(self) -> None:
        self._create_database()
        port = free_port()
        redis = self._service(
            "redis",
            [
                shutil.which("redis-server") or "redis-server",
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            dict(os.environ),
        )
        self.redis_url = f"redis://127.0.0.1:{port}/0"
        _wait_for(lambda: _redis_ping(port), 15, f"redis-server did not start:\n{redis.tail()}")
        stub = self.stub = self._service(
            "stub",
            [sys.executable, "-m", "prompt_ledger.testing.stub_provider", "--port", "0"],
            self._child_env(),
        )

        def stub_ready() -> bool:
            for line in stub.log_path.read_text(errors="replace").splitlines():
                if line.startswith("stub provider listening on "):
                    self.stub_url = line.rsplit(" ", 1)[1].strip()
                    return True
            return False

        _wait_for(stub_ready, 20, f"stub provider did not start:\n{stub.tail()}")
        _wait_for(
            lambda: httpx.get(f"{self.stub_url}/stats", timeout=1).status_code == 200,
            10,
            "stub provider not answering",
        )

    def close(self) -> None:
        for service in reversed(self.services):
            service.stop(timeout_s=10)
        self.services.clear()
        with contextlib.suppress(Exception):
            admin = sa.create_engine(_sync(PG_ADMIN), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
            admin.dispose()

    def _create_database(self) -> None:
        admin = sa.create_engine(_sync(PG_ADMIN), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.db_name}" WITH (FORCE)'))
                conn.execute(sa.text(f'CREATE DATABASE "{self.db_name}"'))
        finally:
            admin.dispose()

    def _service(self, name: str, command: list[str], env: dict[str, str]) -> Service:
        service = Service(name, command, self.folder, env).start()
        self.services.append(service)
        return service

    def _child_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_CONFIG_PREFIXES)}
        env.update(PYTHONUNBUFFERED="1", **extra)
        return env

    def api_env(self, backend: str, name: str) -> dict[str, str]:
        home = self.folder / f"home-{name}"
        home.mkdir(exist_ok=True)
        env = self._child_env(
            API_KEY=API_KEY,
            OPENAI_API_KEY=PROVIDER_KEY,
            OPENAI_BASE_URL=self.stub_url,
            PROMPTLEDGER_HOME=str(home),
            PROVIDER_TIMEOUT_S="60",
            # The sweeper is not on any measured path; a long interval keeps it from
            # re-publishing the queue the submit scenario deliberately leaves unconsumed.
            SWEEP_INTERVAL_S="600",
        )
        if backend == "postgres":
            env.update(DATABASE_URL=self.pg_url, REDIS_URL=self.redis_url)
        return env

    @contextlib.contextmanager
    def api(self, backend: str, workers: int) -> Iterator[Api]:
        name = f"api-{backend}-{workers}p"
        port = free_port()
        service = self._service(
            name,
            [
                sys.executable,
                "-m",
                "prompt_ledger.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            self.api_env(backend, name),
        )
        api = Api(f"http://127.0.0.1:{port}", service, backend, workers)
        try:
            _wait_for(
                lambda: service.alive() and _http_ok(f"{api.url}/health"),
                90,
                f"{name} did not start:\n{service.tail()}",
            )
            api.setup_prompts(self.plan.inflight_delay_s)
            yield api
        finally:
            service.stop()
            self.services.remove(service)

    @contextlib.contextmanager
    def worker(self) -> Iterator[Service]:
        service = self._service(
            "worker",
            [sys.executable, "-m", "prompt_ledger.cli", "worker", "--loglevel", "WARNING"],
            self.api_env("postgres", "worker"),
        )
        try:
            yield service
        finally:
            service.stop(timeout_s=30)
            self.services.remove(service)

    # measuring

    def measure(
        self,
        req: Request,
        *,
        connections: int,
        duration_s: float | None = None,
        timeout_s: float = 10.0,
        profile_pid: int | None = None,
        profile_name: str = "",
    ) -> Load:
        duration = duration_s or self.plan.duration_s
        spy: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
        if self.profile and profile_pid is not None and profile_name:
            spy = self._py_spy(profile_pid, profile_name, duration)
        pids = descendants(profile_pid) if profile_pid is not None else []
        speed_before = python_speed_ms()
        cpu_before = cpu_seconds(pids)
        with spy:
            load = self.gen.run(
                req, connections=connections, duration_s=duration, timeout_s=timeout_s
            )
        if profile_pid is not None:
            load.server_cpu_s = cpu_seconds(pids) - cpu_before
        load.speed_ms = round((speed_before + python_speed_ms()) / 2, 2)
        return load

    @contextlib.contextmanager
    def _py_spy(self, pid: int, name: str, duration_s: float) -> Iterator[None]:
        spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
        out = RESULTS_DIR / f"profile-{name}.txt"
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(pid),
                "--subprocesses",
                "--nonblocking",
                "--gil",  # CPU: only samples of threads holding the GIL
                "--format",
                "raw",
                "--rate",
                "200",
                "--duration",
                str(max(1, int(duration_s))),
                "--output",
                str(out),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=duration_s + 30)
            self.profiles[name] = str(out)

    def repeat(self, fn: Callable[[], dict[str, Any]], *, warmup: Callable[[], object] | None):
        if warmup is not None and self.plan.warmup_s > 0:
            warmup()
        return [fn() for _ in range(self.plan.runs)]


@dataclass
class Api:
    url: str
    service: Service
    backend: str
    workers: int

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": API_KEY, "Content-Type": "application/json"}

    def setup_prompts(self, delay_s: float) -> None:
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as http:
            for name, text in (
                ("bench-hello", TEMPLATE),
                ("bench-delay", f"[[stub delay={delay_s:g}]] {TEMPLATE}"),
            ):
                r = http.put(f"/v1/prompts/{name}", json={"template_source": text})
                r.raise_for_status()
            # one run through the whole path: fails loudly if the stub is not reachable
            r = http.post("/v1/executions:run", json=run_body("bench-hello"))
            r.raise_for_status()
            if r.json()["status"] != "succeeded":
                raise RuntimeError(f"a sync run did not succeed: {r.text}")

    def run_request(self, prompt: str = "bench-hello") -> Request:
        return Request(
            "POST", f"{self.url}/v1/executions:run", _json(run_body(prompt)), self.headers
        )

    def failed_since(self, since: datetime) -> int:
        """Executions recorded ``failed`` since ``since`` (a 200 can carry a failed run)."""
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as http:
            r = http.get(
                "/v1/executions",
                params={"status": "failed", "since": since.isoformat(), "limit": 500},
            )
            r.raise_for_status()
            return len(r.json()["items"])


def run_body(prompt: str) -> dict[str, Any]:
    return {"prompt_name": prompt, "variables": VARIABLES, "model_name": MODEL}


def rendered_prompt() -> str:
    text = TEMPLATE
    for name, value in VARIABLES.items():
        text = text.replace("{{ " + name + " }}", value)
    return text


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _sync(url: str) -> sa.URL:
    return sa.make_url(url).set(drivername="postgresql+psycopg")


def _wait_for(check: Callable[[], bool], timeout_s: float, message: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.1)
    raise RuntimeError(message)


def _http_ok(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def _redis_ping(port: int) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
    try:
        return bool(client.ping())
    finally:
        client.close()


# --- results ------------------------------------------------------------------------------


def summary(values: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
        "n": len(values),
    }


@dataclass
class Result:
    name: str
    title: str
    metric: str  # the key of the runs' dicts that the target is about
    unit: str
    target: str
    runs: list[dict[str, Any]]
    check: Callable[[dict[str, dict[str, float]]], bool] | None = None
    ratios: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def stats(self) -> dict[str, dict[str, float]]:
        keys = [k for k, v in self.runs[0].items() if isinstance(v, (int, float))]
        return {k: summary([float(r[k]) for r in self.runs]) for k in keys}

    def passed(self, smoke: bool) -> bool | None:
        if smoke or self.check is None:
            return None
        return self.check(self.stats())

    def as_dict(self, smoke: bool) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "metric": self.metric,
            "unit": self.unit,
            "target": self.target,
            "stats": self.stats(),
            "ratios": self.ratios,
            "passed": self.passed(smoke),
            "notes": self.notes,
            "runs": self.runs,
        }


def fmt_stat(s: dict[str, float]) -> str:
    def num(x: float) -> str:
        return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}"

    if s["n"] == 1:
        return num(s["median"])
    return f"{num(s['median'])} ({num(s['min'])}-{num(s['max'])})"


def print_table(baselines: list[Result], results: list[Result], smoke: bool) -> None:
    rows = [("", "baseline / scenario", "figure", "median (min-max)", "target", "vs baseline")]
    for group, items in (("B", baselines), ("S", results)):
        for r in items:
            stats = r.stats()
            status = {True: "ok", False: "MISS", None: ""}[r.passed(smoke)]
            extra = ", ".join(f"{k} {v:g}" for k, v in r.ratios.items())
            rows.append(
                (
                    group,
                    r.title,
                    f"{r.metric} [{r.unit}]",
                    fmt_stat(stats[r.metric]),
                    f"{r.target} {status}".strip(),
                    extra,
                )
            )
            for key in _secondary(r):
                rows.append(("", "", f"  {key}", fmt_stat(stats[key]), "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def _secondary(r: Result) -> list[str]:
    wanted = (
        "p50_ms",
        "p99_ms",
        "rps",
        "cpu_ms_per_req",
        "cpu_per_req_in_loops",
        "cpu_ms_per_execution",
        "cpu_per_execution_in_loops",
        "speed_ms",
        "provider_connections",
        "peak_rss_mb",
        "overhead_p99_ms",
        "wall_s",
        "errors",
    )
    stats = r.stats()
    return [k for k in wanted if k in stats and k != r.metric]


# --- scenarios ----------------------------------------------------------------------------


def load_row(load: Load, **extra: Any) -> dict[str, Any]:
    return {**load.as_dict(), **extra}


def baselines(env: Environment) -> list[Result]:
    plan = env.plan
    stub = Request(
        "POST",
        f"{env.stub_url}/chat/completions",
        _json({"model": MODEL, "messages": [{"role": "user", "content": rendered_prompt()}]}),
        {"Authorization": f"Bearer {PROVIDER_KEY}", "Content-Type": "application/json"},
    )
    out = []
    assert env.stub is not None
    pid = env.stub.pid
    for c in (1, plan.concurrency):
        log(f"baseline: stub direct, c={c}")
        runs = env.repeat(
            lambda c=c: load_row(env.measure(stub, connections=c, profile_pid=pid)),
            warmup=lambda c=c: env.measure(stub, connections=c, duration_s=plan.warmup_s),
        )
        metric = "p50_ms" if c == 1 else "rps"
        out.append(
            Result(
                f"stub_c{c}",
                f"stub called directly, c={c}",
                metric,
                "ms" if c == 1 else "req/s",
                "",
                runs,
            )
        )
    log("baseline: PostgreSQL single-row INSERT+COMMIT, 1 client")
    runs = [pg_insert_rate(env.pg_url, plan.duration_s) for _ in range(plan.runs)]
    out.append(Result("pg_insert", "PostgreSQL INSERT+COMMIT, 1 client", "tps", "tx/s", "", runs))
    return out


def pg_insert_rate(url: str, duration_s: float) -> dict[str, Any]:
    """One client, one ledger-shaped row per transaction (psycopg 3, prepared)."""
    import psycopg

    conninfo = _sync(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=False) as conn:
        conn.execute("""
            CREATE TABLE IF NOT EXISTS bench_ledger (
                id uuid PRIMARY KEY, tenant text, prompt_name text, prompt_version int,
                status text, model text, input_text text, output_text text, params jsonb,
                latency_ms int, tokens int, created_at timestamptz, finished_at timestamptz);
            CREATE INDEX IF NOT EXISTS bench_ledger_tenant ON bench_ledger (tenant, created_at);
            CREATE INDEX IF NOT EXISTS bench_ledger_prompt
                ON bench_ledger (prompt_name, prompt_version);
            CREATE INDEX IF NOT EXISTS bench_ledger_status ON bench_ledger (status);
            CREATE INDEX IF NOT EXISTS bench_ledger_created ON bench_ledger (created_at);
        """)
        conn.commit()
        text = rendered_prompt()
        latencies = []
        sql = (
            "INSERT INTO bench_ledger VALUES (%s, 't1', 'bench-hello', 1, 'running', "
            "%s, %s, NULL, '{}', NULL, NULL, now(), NULL)"
        )
        deadline = time.perf_counter() + duration_s
        started = time.perf_counter()
        while (t0 := time.perf_counter()) < deadline:
            conn.execute(sql, (uuid.uuid4(), MODEL, text), prepare=True)
            conn.commit()
            latencies.append((time.perf_counter() - t0) * 1000)
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "tps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(latencies[len(latencies) // 2], 3),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)], 3),
    }


def attach_peer_ratio(results: Sequence[Result]) -> None:
    """``executions:run`` c=64 on two processes against the LiteLLM proxy (issue 11: >= 5x)."""
    by_name = {r.name: r for r in results}
    ours, peer = by_name.get("sync_postgres_2p"), by_name.get("peer_litellm")
    if ours and peer and (peer_rps := peer.stats()["rps"]["median"]):
        ours.ratios["x_litellm"] = round(ours.stats()["rps"]["median"] / peer_rps, 2)


def attach_ratios(result: Result, base: dict[str, Result]) -> None:
    """Every figure as a ratio to its baseline (same run)."""
    stats = result.stats()
    stub = next((b for n, b in base.items() if n.startswith("stub_c") and n != "stub_c1"), None)
    stub_rps = stub.stats()["rps"]["median"] if stub else None
    insert = base["pg_insert"].stats()["tps"]["median"] if "pg_insert" in base else None
    if result.unit.endswith("/s") and stub_rps:
        result.ratios["x_stub_direct"] = round(stats[result.metric]["median"] / stub_rps, 3)
    if result.unit.endswith("/s") and insert and "sqlite" not in result.name:
        result.ratios["x_pg_insert"] = round(stats[result.metric]["median"] / insert, 3)


def scenario_sync_c1(env: Environment, api: Api, base: dict[str, Result]) -> Result:
    log("scenario: sync run overhead, c=1 (PostgreSQL + Redis, 1 API process)")
    req = api.run_request()
    stub = base["stub_c1"]
    stub_runs = stub.runs
    since = datetime.now(UTC)
    runs = []
    env.measure(req, connections=1, duration_s=env.plan.warmup_s) if env.plan.warmup_s else None
    for i in range(env.plan.runs):
        load = env.measure(req, connections=1, profile_pid=api.service.pid, profile_name="sync_c1")
        direct = stub_runs[min(i, len(stub_runs) - 1)]
        runs.append(
            load_row(
                load,
                overhead_p50_ms=round(load.p50_ms - direct["p50_ms"], 3),
                overhead_p99_ms=round(load.p99_ms - direct["p99_ms"], 3),
            )
        )
    result = Result(
        "sync_c1",
        "executions:run c=1, 1 API process (PG)",
        "overhead_p50_ms",
        "ms",
        "p50 <= +4 ms, p99 <= +15 ms",
        runs,
        check=lambda s: (
            s["overhead_p50_ms"]["median"] <= 4 and s["overhead_p99_ms"]["median"] <= 15
        ),
    )
    stats = result.stats()
    result.ratios["x_stub_p50"] = round(
        stats["p50_ms"]["median"] / stub.stats()["p50_ms"]["median"], 2
    )
    _note_failures(result, api, since)
    return result


def scenario_sync_throughput(
    env: Environment, api: Api, base: dict[str, Result], *, target: float
) -> Result:
    label = "PG+Redis" if api.backend == "postgres" else "SQLite"
    log(f"scenario: sync throughput c={env.plan.concurrency}, {api.workers} process(es), {label}")
    req = api.run_request()
    c = env.plan.concurrency
    since = datetime.now(UTC)
    name = f"sync_{api.backend}_{api.workers}p"

    def one() -> dict[str, Any]:
        before = stub_connections(env)
        load = env.measure(req, connections=c, profile_pid=api.service.pid, profile_name=name)
        return load_row(load, provider_connections=stub_connections(env) - before)

    runs = env.repeat(
        one, warmup=lambda: env.measure(req, connections=c, duration_s=env.plan.warmup_s)
    )
    result = Result(
        name,
        f"executions:run c={c}, {api.workers} API proc, {label}",
        "rps",
        "runs/s",
        f">= {target:g}",
        runs,
        check=lambda s: s["rps"]["median"] >= target,
    )
    _note_failures(result, api, since)
    return result


def scenario_inflight(env: Environment, api: Api) -> Result:
    plan = env.plan
    log(f"scenario: {plan.inflight} sync runs in flight, stub delay {plan.inflight_delay_s:g}s")
    req = api.run_request("bench-delay")
    since = datetime.now(UTC)
    runs = []
    ceiling = plan.inflight / plan.inflight_delay_s
    for _ in range(plan.runs):
        connections_before = stub_connections(env)
        with PeakRss(api.service.pid) as rss:
            load = env.measure(
                req,
                connections=plan.inflight,
                duration_s=plan.inflight_duration_s,
                timeout_s=30,
                profile_pid=api.service.pid,
                profile_name="inflight",
            )
        runs.append(
            load_row(
                load,
                peak_rss_mb=round(rss.peak_mb, 1),
                x_ceiling=round(load.rps / ceiling, 3),
                provider_connections=stub_connections(env) - connections_before,
            )
        )
    result = Result(
        "inflight",
        f"{plan.inflight} in flight, stub {plan.inflight_delay_s:g}s, 1 API proc (PG)",
        "rps",
        "runs/s",
        ">= 700, RSS < 400 MB",
        runs,
        check=lambda s: s["rps"]["median"] >= 700 and s["peak_rss_mb"]["max"] < 400,
    )
    result.ratios["x_ceiling"] = result.stats()["x_ceiling"]["median"]
    result.notes.append(
        f"ceiling = connections / delay = {ceiling:g}/s; the first {plan.inflight_delay_s:g}s "
        "of each run completes nothing"
    )
    _note_failures(result, api, since)
    return result


def scenario_submit(env: Environment, api: Api) -> Result:
    log(f"scenario: async submits, c={env.plan.concurrency}, {api.workers} API processes")
    req = Request(
        "POST", f"{api.url}/v1/executions:submit", _json(run_body("bench-hello")), api.headers
    )
    c = env.plan.concurrency
    runs = env.repeat(
        lambda: load_row(
            env.measure(req, connections=c, profile_pid=api.service.pid, profile_name="submit")
        ),
        warmup=lambda: env.measure(req, connections=c, duration_s=env.plan.warmup_s),
    )
    result = Result(
        "submit_2p",
        f"executions:submit c={c}, {api.workers} API proc (PG+Redis)",
        "rps",
        "submits/s",
        ">= 1000",
        runs,
        check=lambda s: s["rps"]["median"] >= 1000,
    )
    result.notes.append("no Celery worker consumes during this scenario (API cost only)")
    return result


def scenario_registry(env: Environment, api: Api) -> Result:
    log(f"scenario: GET /v1/prompts/{{name}}, c={env.plan.concurrency}, {api.workers} processes")
    req = Request("GET", f"{api.url}/v1/prompts/bench-hello", None, {"X-API-Key": API_KEY})
    c = env.plan.concurrency
    runs = env.repeat(
        lambda: load_row(
            env.measure(req, connections=c, profile_pid=api.service.pid, profile_name="registry")
        ),
        warmup=lambda: env.measure(req, connections=c, duration_s=env.plan.warmup_s),
    )
    return Result(
        "registry_2p",
        f"GET /v1/prompts/{{name}} c={c}, {api.workers} API proc (PG)",
        "rps",
        "req/s",
        ">= 3000",
        runs,
        check=lambda s: s["rps"]["median"] >= 3000,
    )


def scenario_worker(env: Environment, api: Api, *, delay: bool) -> Result:
    plan = env.plan
    n = plan.worker_n_slow if delay else plan.worker_n_fast
    delay_s = plan.worker_delay_s if delay else 0.0
    prompt = "bench-delay" if delay else "bench-hello"
    log(f"scenario: one worker process, {n} queued executions, stub delay {delay_s:g}s")
    engine = sa.create_engine(_sync(env.pg_url))
    runs = []
    try:
        for _ in range(plan.runs):
            _empty_queue(env, engine)
            ids = asyncio.run(_submit_many(api, prompt, n))
            started = time.perf_counter()
            speed_before = python_speed_ms()
            cpu = 0.0
            with env.worker() as worker:
                if env.profile:  # sample the steady state, not the worker's imports
                    _wait_for(
                        lambda ids=ids: _finished(engine, ids) >= min(n, 100),  # type: ignore[misc]
                        120,
                        f"worker did not start executing:\n{worker.tail()}",
                    )
                profile = (
                    env._py_spy(worker.pid, f"worker_{'1s' if delay else '0s'}", 8)
                    if env.profile
                    else contextlib.nullcontext()
                )
                with profile:
                    _wait_for(
                        lambda ids=ids: _finished(engine, ids) >= n,  # type: ignore[misc]
                        120 + n / 50,
                        f"worker did not finish {n} executions:\n{worker.tail()}",
                    )
                wall = time.perf_counter() - started
                cpu = cpu_seconds(descendants(worker.pid))  # start-up included
            first_start, last_done, ok = _span(engine, ids)
            span = (last_done - first_start).total_seconds()
            speed = (speed_before + python_speed_ms()) / 2
            runs.append(
                {
                    "rate": round(n / span, 1),
                    "span_s": round(span, 2),
                    "wall_s": round(wall, 2),
                    "cpu_ms_per_execution": round(cpu * 1000 / n, 3),
                    "cpu_per_execution_in_loops": round(cpu * 1000 / n / speed, 3),
                    "speed_ms": round(speed, 2),
                    "succeeded": ok,
                    "executions": n,
                }
            )
    finally:
        engine.dispose()
    target = 200 if delay else 300
    result = Result(
        f"worker_{'1s' if delay else '0s'}",
        f"1 worker process, stub delay {delay_s:g}s ({n} queued)",
        "rate",
        "executions/s",
        f">= {target}",
        runs,
        check=lambda s: s["rate"]["median"] >= target,
    )
    result.notes.append(
        "rate = executions / (last completed_at - first started_at), from the ledger; "
        "wall_s adds the worker's start-up"
    )
    if any(r["succeeded"] != r["executions"] for r in runs):
        result.notes.append("WARNING: some executions did not succeed")
    return result


def _empty_queue(env: Environment, engine: sa.Engine) -> None:
    import redis

    client = redis.Redis.from_url(env.redis_url)
    try:
        client.flushall()
    finally:
        client.close()
    with engine.begin() as conn:  # leftovers of the submit scenario: never to run
        conn.execute(
            sa.text(
                "UPDATE executions SET status = 'canceled', error_type = 'canceled', "
                "completed_at = now() WHERE status = 'queued'"
            )
        )


async def _submit_many(api: Api, prompt: str, n: int) -> list[str]:
    ids: list[str] = []
    queue = iter(range(n))
    async with httpx.AsyncClient(base_url=api.url, headers=api.headers, timeout=60) as http:

        async def client() -> None:
            for _ in queue:
                r = await http.post("/v1/executions:submit", json=run_body(prompt))
                r.raise_for_status()
                ids.append(r.json()["execution_id"])

        await asyncio.gather(*(client() for _ in range(16)))
    return ids


def _finished(engine: sa.Engine, ids: list[str]) -> int:
    with engine.connect() as conn:
        return int(
            conn.scalar(
                sa.text(
                    "SELECT count(*) FROM executions WHERE id = ANY(CAST(:ids AS uuid[])) "
                    "AND status IN ('succeeded', 'failed')"
                ),
                {"ids": ids},
            )
            or 0
        )


def _span(engine: sa.Engine, ids: list[str]) -> tuple[datetime, datetime, int]:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT min(started_at), max(completed_at), "
                "count(*) FILTER (WHERE status = 'succeeded') "
                "FROM executions WHERE id = ANY(CAST(:ids AS uuid[]))"
            ),
            {"ids": ids},
        ).one()
    return row[0], row[1], int(row[2])


def stub_connections(env: Environment) -> int:
    """TCP connections the stub has accepted so far (its ``clients``): with connection reuse
    a scenario opens about as many as it has calls in flight, not one per call."""
    return int(httpx.get(f"{env.stub_url}/stats", timeout=10).json()["clients"])


def _note_failures(result: Result, api: Api, since: datetime) -> None:
    failed = api.failed_since(since)
    if failed:
        result.notes.append(f"WARNING: {failed}{'+' if failed == 500 else ''} runs failed")


def scenario_analytics(env: Environment) -> list[Result]:
    sys.path.insert(0, str(BENCH_DIR))
    import analytics_scale

    plan = env.plan
    out = []
    db = f"pl_bench_analytics_{os.getpid()}"
    try:
        for rows in plan.analytics_rows:
            log(f"scenario: analytics at {rows:,} executions (seeding...)")
            url = analytics_scale.reset_database(db)
            now = datetime.now(UTC)
            seed_s = analytics_scale.fill(url, rows, now)
            scan = statistics.median(analytics_scale.full_scan_ms(url) for _ in range(3))
            target = 50 if rows <= 1_000_000 else 100
            day = {"since": (now - timedelta(hours=24)).isoformat()}
            for label, params in (("all time", {}), ("24 h", day)):
                timings = asyncio.run(
                    analytics_scale.time_requests(url, params, plan.analytics_repeat)
                )
                runs = [{"ms": round(t, 2)} for t in timings]
                result = Result(
                    f"analytics_{rows}_{'all' if not params else '24h'}",
                    f"analytics {label}, {rows:,} executions",
                    "ms",
                    "ms (p50)",
                    f"p50 <= {target}",
                    runs,
                    check=lambda s, target=target: s["ms"]["median"] <= target,
                )
                result.ratios["x_full_scan"] = round(result.stats()["ms"]["median"] / scan, 4)
                result.notes.append(
                    f"full-scan baseline {scan:.0f} ms; seeding took {seed_s:.0f} s; "
                    f"{plan.analytics_repeat} requests"
                )
                out.append(result)
    finally:
        with contextlib.suppress(Exception):
            admin = sa.create_engine(_sync(PG_ADMIN), isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
            admin.dispose()
    return out


# --- peers ------------------------------------------------------------------------------------

LITELLM_VERSION = "1.108.7"
PEER_KEY = "sk-bench-peer"
PEER_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "promptledger-bench"


def litellm_venv() -> Path:
    """A scratch virtualenv with the LiteLLM proxy, pinned, made once and kept in the user's
    cache: a peer is measured, never a dependency of the project."""
    venv = PEER_CACHE / f"litellm-{LITELLM_VERSION}"
    binary = venv / "bin" / "litellm"
    if binary.exists():
        return binary
    uv = shutil.which("uv")
    if uv is None:
        raise RuntimeError("the LiteLLM peer needs uv to build its scratch virtualenv")
    log(f"peer: installing litellm[proxy]=={LITELLM_VERSION} into {venv} (once)")
    subprocess.run([uv, "venv", "-q", "-p", sys.executable, str(venv)], check=True)
    subprocess.run(
        [
            uv,
            "pip",
            "install",
            "-q",
            "-p",
            str(venv / "bin" / "python"),
            f"litellm[proxy]=={LITELLM_VERSION}",
        ],
        check=True,
    )
    return binary


def scenario_litellm(env: Environment) -> Result:
    """The LiteLLM proxy (no database logging, 2 worker processes) in front of the same stub
    at the same concurrency: the peer that ``executions:run`` c=64 is compared with."""
    c = env.plan.concurrency
    log(f"scenario: peer LiteLLM proxy {LITELLM_VERSION} c={c}, 2 processes")
    binary = litellm_venv()
    config = env.folder / "litellm.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "model_list": [
                    {
                        "model_name": MODEL,
                        "litellm_params": {
                            "model": f"openai/{MODEL}",
                            "api_base": env.stub_url,
                            "api_key": PROVIDER_KEY,
                        },
                    }
                ],
                "litellm_settings": {"drop_params": True, "telemetry": False},
                # it refuses to start without a key; ours is checked on every request too
                "general_settings": {"master_key": PEER_KEY},
            }
        )
    )
    port = free_port()
    service = env._service(
        "litellm",
        [
            str(binary),
            "--config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--num_workers",
            "2",
            # gunicorn: uvicorn's own supervisor kills workers whose imports outlast its
            # 5 s health check on a loaded machine, forever
            "--run_gunicorn",
        ],
        env._child_env(LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_LOG="ERROR"),
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        try:  # its imports take ~1 min on this machine
            _wait_for(lambda: _http_ok(f"{base_url}/health/liveliness"), 300, "")
        except RuntimeError:
            raise RuntimeError(f"the LiteLLM proxy did not start:\n{service.tail()}") from None
        req = Request(
            "POST",
            f"{base_url}/chat/completions",
            _json({"model": MODEL, "messages": [{"role": "user", "content": rendered_prompt()}]}),
            {"Authorization": f"Bearer {PEER_KEY}", "Content-Type": "application/json"},
        )
        runs = env.repeat(
            lambda: load_row(env.measure(req, connections=c, profile_pid=service.pid)),
            warmup=lambda: env.measure(req, connections=c, duration_s=env.plan.warmup_s),
        )
    finally:
        service.stop()
        env.services.remove(service)
    return Result(
        "peer_litellm",
        f"peer: LiteLLM proxy {LITELLM_VERSION} c={c}, 2 proc, no DB",
        "rps",
        "req/s",
        "",
        runs,
    )


SCENARIOS = (
    "sync_c1",
    "inflight",
    "sync_pg_2p",
    "registry",
    "submit",
    "worker",
    "sync_sqlite",
    "analytics",
    "litellm",
)


# --- main ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="seconds per scenario, no targets")
    parser.add_argument("--runs", type=int, help="runs per scenario (default 3; smoke 1)")
    parser.add_argument("--duration", type=float, help="seconds per load run (default 10)")
    parser.add_argument("--concurrency", type=int, help="connections (default 64; smoke 8)")
    parser.add_argument(
        "--pg-driver",
        choices=("asyncpg", "psycopg"),
        default="asyncpg",
        help="the PostgreSQL driver the API and worker use (postgresql:// or postgresql+psycopg://)",
    )
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(SCENARIOS)}")
    parser.add_argument("--skip", default="", help="comma-separated scenarios to leave out")
    parser.add_argument("--analytics-rows", type=int, nargs="+", help="default 1000000")
    parser.add_argument(
        "--analytics-10m", action="store_true", help="also 10M rows (seeding takes minutes)"
    )
    parser.add_argument("--generator", choices=("auto", "wrk", "python"), default="auto")
    parser.add_argument("--profile", action="store_true", help="py-spy every measured server")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="MINUTES",
        help="first wait up to MINUTES for load average < 1.0 and no pytest, for a minute",
    )
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/<time>.json)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.smoke_plan(args) if args.smoke else Plan.full(args)
    chosen = set(args.only.split(",")) if args.only else set(SCENARIOS)
    chosen -= set(filter(None, args.skip.split(",")))
    unknown = chosen - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios: {', '.join(sorted(unknown))}")
    folder = Path(tempfile.mkdtemp(prefix="pl-bench-"))
    generator = LoadGenerator(folder, args.generator)
    env = Environment(plan, folder, generator, args.profile, pg_driver=args.pg_driver)
    quiet = wait_until_quiet(args.wait_quiet) if args.wait_quiet else None
    before = machine_state()
    started = time.perf_counter()
    log(
        f"plan: {'smoke' if plan.smoke else 'full'}, load generator {generator.name}, "
        f"machine {before}"
    )
    results: list[Result] = []
    base_list: list[Result] = []
    try:
        env.start_base()
        base_list = baselines(env)
        base = {b.name: b for b in base_list}
        if chosen & {"sync_c1", "inflight"}:
            with env.api("postgres", 1) as api:
                if "sync_c1" in chosen:
                    results.append(scenario_sync_c1(env, api, base))
                if "inflight" in chosen:
                    results.append(scenario_inflight(env, api))
        if chosen & {"sync_pg_2p", "registry", "submit", "worker"}:
            with env.api("postgres", 2) as api:
                if "sync_pg_2p" in chosen:
                    results.append(scenario_sync_throughput(env, api, base, target=550))
                if "registry" in chosen:
                    results.append(scenario_registry(env, api))
                if "submit" in chosen:
                    results.append(scenario_submit(env, api))
                if "worker" in chosen:
                    results.append(scenario_worker(env, api, delay=False))
                    results.append(scenario_worker(env, api, delay=True))
        if "sync_sqlite" in chosen:
            with env.api("sqlite", 1) as api:
                results.append(scenario_sync_throughput(env, api, base, target=150))
        if "analytics" in chosen:
            results += scenario_analytics(env)
        if "litellm" in chosen and not (plan.smoke and args.only is None):
            results.append(scenario_litellm(env))
    except BaseException:
        for service in env.services:
            log(f"--- {service.name} log tail ---\n{service.tail()}")
        raise
    finally:
        env.close()
        shutil.rmtree(folder, ignore_errors=True)
    for result in results:
        attach_ratios(result, base)
    attach_peer_ratio(results)
    after = machine_state()
    print()
    print_table(base_list, results, plan.smoke)
    for r in results:
        for note in r.notes:
            print(f"  [{r.name}] {note}")
    report = {
        "meta": {
            "smoke": plan.smoke,
            "plan": asdict(plan),
            "generator": generator.name,
            "quiet_wait": quiet,
            "machine_before": before,
            "machine_after": after,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "elapsed_s": round(time.perf_counter() - started, 1),
            "profiles": env.profiles,
            "pg_driver": args.pg_driver,
        },
        "baselines": [b.as_dict(plan.smoke) for b in base_list],
        "scenarios": [r.as_dict(plan.smoke) for r in results],
    }
    out = args.out or RESULTS_DIR / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str))
    print(
        f"\nJSON: {out}\nmachine: load average before {before['loadavg']}, after "
        f"{after['loadavg']}; pytest processes before {before['pytest_processes']}, after "
        f"{after['pytest_processes']}; quiet wait: {quiet}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
