"""Where the CPU goes, from a py-spy raw profile (``bench/run.py --profile`` writes them).

    uv run python bench/profile_summary.py bench/results/profile-sync_postgres_2p.txt

Each sample is charged to the innermost layer of the request it belongs to (a database call
made by the service is "database", not "service"); the layers are matched by module path.
Then the top functions by inclusive share.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "FastAPI / Starlette / uvicorn (HTTP, routing, dependencies)",
        ("fastapi/", "starlette/", "uvicorn/"),
    ),
    ("pydantic (bodies, responses)", ("pydantic/", "prompt_ledger/schemas/")),
    (
        "PromptLedger services and routes (own code)",
        ("prompt_ledger/services/", "prompt_ledger/api/"),
    ),
    (
        "database: SQLAlchemy + asyncpg/aiosqlite + db/direct",
        ("sqlalchemy/", "asyncpg/", "aiosqlite/", "greenlet", "prompt_ledger/db/"),
    ),
    (
        "provider call: openai SDK + httpx2 + aiohttp",
        ("openai/", "httpx2/", "aiohttp/", "prompt_ledger/providers/"),
    ),
    (
        "template rendering (sandboxed Jinja2)",
        ("prompt_ledger/services/rendering/", "jinja2/"),
    ),
    ("logging (structlog)", ("structlog/", "prompt_ledger/logging.py")),
    ("Celery / kombu / redis (publish, consume)", ("celery/", "kombu/", "redis/", "vine/")),
    ("garbage collection / imports", ("<frozen importlib", "gc_tuning")),
    ("threads: hand-offs and pools", ("concurrent/futures", "threading.py", "workers/tasks.py")),
]


# A sample inside one of these is charged to it whatever it calls (the SDK's pydantic models
# are the provider call's cost, not "pydantic"); otherwise to the innermost layer present.
STICKY = {
    "database: SQLAlchemy + asyncpg/aiosqlite + db/direct",
    "provider call: openai SDK + httpx2 + aiohttp",
    "template rendering (sandboxed Jinja2)",
    "logging (structlog)",
    "Celery / kombu / redis (publish, consume)",
}


def layer_of(frames: list[str]) -> str:
    innermost: dict[str, int] = {}
    for name, keys in LAYERS:
        positions = [i for i, frame in enumerate(frames) if any(k in frame for k in keys)]
        if positions:
            innermost[name] = positions[-1]
    sticky = {name: pos for name, pos in innermost.items() if name in STICKY}
    pool = sticky or innermost
    if not pool:
        return "event loop / other"
    return max(pool, key=lambda name: pool[name])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    layers: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    with open(args.profile) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            if not stack:
                continue
            n = int(count)
            frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
            total += n
            layers[layer_of(frames)] += n
            for frame in set(frames):
                inclusive[frame] += n
    print(f"{total} samples")
    for name, n in layers.most_common():
        print(f"{100 * n / total:5.1f}%  {name}")
    print("\ntop functions (inclusive):")
    for frame, n in inclusive.most_common(args.top):
        if frame.startswith(("process ", "thread ")):
            continue
        print(f"{100 * n / total:5.1f}%  {frame[:120]}")


if __name__ == "__main__":
    main()
