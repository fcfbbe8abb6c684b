"""``bench/run.py --smoke`` runs end to end, so the benchmark never rots.

The smoke mode starts everything the full bench starts (a scratch PostgreSQL database, a
private redis-server, the stub provider, ``promptledger serve`` with 1 and 2 processes and on
SQLite, ``promptledger worker``), drives every scenario for about a second and checks no
targets. Needs the local PostgreSQL and a ``redis-server`` binary (as CI provides).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from tests.conftest import PG_ADMIN_URL, service_unavailable

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = {
    "sync_c1",
    "inflight",
    "sync_postgres_2p",
    "registry_2p",
    "submit_2p",
    "worker_0s",
    "worker_1s",
    "sync_sqlite_1p",
}


def require_services() -> None:
    if shutil.which("redis-server") is None:
        service_unavailable("redis-server", "not on PATH")
    admin = sa.create_engine(sa.make_url(PG_ADMIN_URL).set(drivername="postgresql+psycopg"))
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        service_unavailable("PostgreSQL", exc.orig)
    finally:
        admin.dispose()


def test_smoke_run_exits_0_and_writes_its_json(tmp_path: Path) -> None:
    require_services()
    out = tmp_path / "smoke.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--smoke", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=170,
        env={**_env(), "PROMPTLEDGER_BENCH_PG": PG_ADMIN_URL},
    )
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    report = json.loads(out.read_text())
    assert report["meta"]["smoke"] is True
    assert {b["name"] for b in report["baselines"]} >= {"stub_c1", "pg_insert"}
    scenarios = {s["name"]: s for s in report["scenarios"]}
    assert set(scenarios) >= SCENARIOS
    assert any(name.startswith("analytics_") for name in scenarios)
    for scenario in scenarios.values():
        assert scenario["passed"] is None  # smoke mode checks no targets
        assert scenario["runs"], scenario["name"]
    # every load run got answers, and the baselines are in the table printed
    assert all(s["stats"]["rps"]["median"] > 0 for s in scenarios.values() if "rps" in s["stats"])
    assert "stub called directly" in done.stdout


def _env() -> dict[str, str]:
    import os

    return dict(os.environ)
