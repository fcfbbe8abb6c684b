"""Analytics latency against ledger size, on PostgreSQL.

Seeds N executions (spread over 30 days, 20 prompts in both modes) straight into a scratch
database, builds the hourly rollups the service maintains, then times
GET /v1/analytics/prompts (all time and the last 24 h) through the real app in-process.
Baseline, same run: a full-scan aggregate over the executions table (what analytics would
cost without rollups).

    uv run python bench/analytics_scale.py --rows 100000 1000000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from prompt_ledger.api.app import create_app
from prompt_ledger.config import Settings
from prompt_ledger.db import migrate
from prompt_ledger.scripts.seed_models import seed

ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
DB = "pl_bench_analytics"
KEY = "bench-key-0123456789"
PROMPTS = 20
DAYS = 30


def reset_database(db: str = DB) -> str:
    admin = sa.create_engine(ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))
    admin.dispose()
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    migrate.upgrade(url)
    seed(url)
    return url


def fill(url: str, rows: int, now: datetime) -> float:
    """Insert prompts, versions, ``rows`` executions and their rollups; returns seconds."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    started = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(
            sa.text("""
            INSERT INTO prompts (name, mode, created_at, updated_at)
            SELECT 'bench.p' || i,
                   (CASE WHEN i % 2 = 0 THEN 'full' ELSE 'tracking' END)::prompt_mode,
                   now(), now()
            FROM generate_series(1, :n) AS i"""),
            {"n": PROMPTS},
        )
        conn.execute(
            sa.text("""
            INSERT INTO prompt_versions (prompt_id, version_number, template_source, checksum,
                                         variables, status, metadata, created_at)
            SELECT id, 1, 'bench', md5(name) || md5(name), '[]', 'active', '{}', now()
            FROM prompts""")
        )
        conn.execute(
            sa.text("""
            UPDATE prompts p SET active_version_id = v.id FROM prompt_versions v
            WHERE v.prompt_id = p.id""")
        )
        conn.execute(
            sa.text("""
            INSERT INTO executions (id, prompt_id, prompt_version_id, model_id, execution_mode,
                status, variables, rendered_prompt, params, params_dropped, latency_ms,
                prompt_tokens, response_tokens, attempts, metadata, created_at, started_at,
                completed_at)
            SELECT gen_random_uuid(), v.prompt_id, v.id, (SELECT min(id) FROM models),
                   'sync',
                   (CASE WHEN random() < 0.9 THEN 'succeeded' ELSE 'failed' END)::execution_status,
                   '{}', 'bench', '{}', '[]', (50 + random() * 3000)::int,
                   (10 + random() * 500)::int, (10 + random() * 800)::int, 1, '{}', t, t, t
            FROM (SELECT i, :now - (random() * interval '30 days') AS t
                  FROM generate_series(1, :rows) AS i) AS g
            JOIN prompt_versions v ON v.prompt_id = (SELECT min(id) FROM prompts) + (g.i % :p)
            """),
            {"rows": rows, "now": now, "p": PROMPTS},
        )
        conn.execute(
            sa.text("""
            INSERT INTO execution_rollups
            SELECT date_trunc('hour', created_at), prompt_id, count(*),
                   count(*) FILTER (WHERE status = 'succeeded'),
                   count(*) FILTER (WHERE status = 'failed'),
                   count(latency_ms), coalesce(sum(latency_ms), 0),
                   coalesce(sum(prompt_tokens), 0), coalesce(sum(response_tokens), 0)
            FROM executions GROUP BY 1, 2""")
        )
        conn.execute(
            sa.text("""
            INSERT INTO latency_rollups
            SELECT date_trunc('hour', created_at), prompt_id,
                   CASE WHEN latency_ms < 100 THEN latency_ms
                        ELSE 100 + floor(ln(latency_ms / 100.0) / ln(1.01) + 1e-9)::int END,
                   count(*)
            FROM executions WHERE latency_ms IS NOT NULL GROUP BY 1, 2, 3""")
        )
        conn.execute(
            sa.text("""
            INSERT INTO latency_totals
            SELECT prompt_id, bucket, sum(count) FROM latency_rollups GROUP BY 1, 2""")
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # Live rollup rows arrive hour by hour, so they sit in time order on disk; the bulk
        # INSERT above does not, and CLUSTER restores that order.
        conn.execute(sa.text("CLUSTER latency_rollups USING pk_latency_rollups"))
        conn.execute(sa.text("CLUSTER execution_rollups USING pk_execution_rollups"))
        conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - started


def full_scan_ms(url: str) -> float:
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as conn:
        started = time.perf_counter()
        conn.execute(
            sa.text("""
            SELECT prompt_id, count(*), avg(latency_ms),
                   percentile_disc(0.95) WITHIN GROUP (ORDER BY latency_ms),
                   sum(prompt_tokens), sum(response_tokens)
            FROM executions GROUP BY prompt_id""")
        ).all()
        elapsed = (time.perf_counter() - started) * 1000
    engine.dispose()
    return elapsed


async def time_requests(url: str, params: dict[str, str], repeat: int) -> list[float]:
    settings = Settings(_env_file=None, database_url=url, api_key=KEY)  # type: ignore[call-arg, arg-type]
    app = create_app(settings, freeze_gc=True)  # as `promptledger serve` runs it
    timings = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bench",
            headers={"X-API-Key": KEY},
        ) as client,
    ):
        for _ in range(repeat + 2):
            started = time.perf_counter()
            r = await client.get("/v1/analytics/prompts", params=params)
            timings.append((time.perf_counter() - started) * 1000)
            assert r.status_code == 200, r.text
    return timings[2:]  # the first two warm caches and the pool


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    now = datetime.now(UTC)
    results = []
    for rows in args.rows:
        url = reset_database()
        seed_s = fill(url, rows, now)
        scan = statistics.median(full_scan_ms(url) for _ in range(3))
        day = {"since": (now - timedelta(hours=24)).isoformat()}
        for label, params in (("all time", {}), ("last 24 h", day)):
            t = asyncio.run(time_requests(url, params, args.repeat))
            p50 = statistics.median(t)
            results.append(
                {
                    "rows": rows,
                    "window": label,
                    "p50_ms": round(p50, 2),
                    "p95_ms": round(sorted(t)[int(0.95 * len(t)) - 1], 2),
                    "full_scan_baseline_ms": round(scan, 1),
                    "ratio_to_full_scan": round(p50 / scan, 3),
                    "seed_s": round(seed_s, 1),
                }
            )
    print(f"{'rows':>10} {'window':>10} {'p50 ms':>8} {'p95 ms':>8} {'scan ms':>9} {'ratio':>7}")
    for r in results:
        print(
            f"{r['rows']:>10} {r['window']:>10} {r['p50_ms']:>8} {r['p95_ms']:>8} "
            f"{r['full_scan_baseline_ms']:>9} {r['ratio_to_full_scan']:>7}"
        )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
