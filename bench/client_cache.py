"""Micro-benchmark: the cached client's ``get_prompt`` answered from memory (issue 12: < 50 µs).

    uv run python bench/client_cache.py [--calls 200000]

The app runs in-process on a scratch SQLite (Starlette's TestClient, as the client tests do);
one ``get_prompt`` per key fills the cache, then every call is timed as a hit. Baselines in
the same run: a plain ``dict`` lookup behind one method call (the floor of any cache), and
one uncached ``get_prompt`` (``cache_ttl_s=0``: a request through the in-process app), so
the figures are printed as ratios too.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient

from prompt_ledger.api.app import create_app
from prompt_ledger.client import PromptLedger
from prompt_ledger.config import Settings
from prompt_ledger.db import migrate
from prompt_ledger.scripts.seed_models import seed

KEY = "bench-key"
BASE = "http://testserver"


def per_call_us(fn: Callable[[], object], calls: int, rounds: int = 5) -> float:
    """The median over ``rounds`` of the mean time of one call, in µs."""
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(samples)


class _Floor:
    def __init__(self) -> None:
        self._entries = {("welcome", "label", "active"): object()}

    def get(self, name: str) -> object:
        return self._entries[(name, "label", "active")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="pl-bench-cache-"))
    url = f"sqlite:///{home / 'bench.db'}"
    migrate.upgrade(url)
    seed(url)
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        api_key=KEY,  # type: ignore[arg-type]
        promptledger_home=home,
    )
    with (
        TestClient(create_app(settings), base_url=BASE) as http,
        PromptLedger(BASE, KEY, http_client=http) as client,
    ):
        client.save_prompt("welcome", "Hello {{ name }}!")
        client.save_prompt("welcome", "Hi {{ name }}!")
        client.set_label("welcome", "ab", split=[(1, 50), (2, 50)])
        client.get_prompt("welcome")
        client.get_prompt("welcome", version=1)
        client.get_prompt("welcome", label="ab")
        floor = _Floor()
        figures = {
            "floor: dict lookup behind a method": per_call_us(
                lambda: floor.get("welcome"), args.calls
            ),
            "get_prompt(name) hit (label active)": per_call_us(
                lambda: client.get_prompt("welcome"), args.calls
            ),
            "get_prompt(name, version=1) hit": per_call_us(
                lambda: client.get_prompt("welcome", version=1), args.calls
            ),
            "get_prompt(name, label=split, subject=…) hit": per_call_us(
                lambda: client.get_prompt("welcome", label="ab", subject="user-42"), args.calls
            ),
            "uncached get_prompt (cache_ttl_s=0, in-process app)": per_call_us(
                lambda: client.get_prompt("welcome", cache_ttl_s=0), 300, rounds=3
            ),
        }

    floor_us = figures["floor: dict lookup behind a method"]
    print(f"{'figure':55} {'µs/call':>10} {'x floor':>9}")
    for name, value in figures.items():
        print(f"{name:55} {value:10.2f} {value / floor_us:9.1f}")
    hit = figures["get_prompt(name) hit (label active)"]
    print(f"\ntarget: a cached hit < 50 µs -> {'ok' if hit < 50 else 'MISS'} ({hit:.2f} µs)")


if __name__ == "__main__":
    main()
