"""A/B: the benchmark of this checkout against the one of an earlier commit, alternating.

    uv run python bench/ab.py --base 692b0fd --rounds 2 -- --only sync_c1,submit --duration 8

Each round runs ``bench/run.py`` (with the arguments after ``--``, plus ``--runs 1``) once
from a scratch worktree of ``--base`` (its own locked environment, built with ``uv sync``)
and once from ``--new`` (another scratch worktree; default this checkout as it is), in
alternating order, so a drift of the machine's speed over the run falls on both sides
alike. Prints, per scenario, the median of each side and the ratio new / base (for
latencies lower is better, for rates higher is better), and the same for CPU per request in
calibration loops. Options only the new side's bench knows (``--pg-driver``) go in
``--new-only``. JSON of every run goes to ``bench/results/ab-<time>/``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"


def log(message: str) -> None:
    print(f"[ab {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def checkout(ref: str, folder: Path, name: str) -> Path:
    tree = folder / name
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), ref], check=True
    )
    subprocess.run(["uv", "sync", "--locked", "--quiet"], cwd=tree, check=True)
    return tree


def run(tree: Path, args: list[str], out: Path) -> dict[str, Any]:
    command = ["uv", "run", "--locked", "python", "bench/run.py", "--runs", "1", "--out", str(out)]
    subprocess.run([*command, *args], cwd=tree, check=True, stdout=subprocess.DEVNULL)
    report: dict[str, Any] = json.loads(out.read_text())
    return report


# CPU per request in calibration loops: stays put while the VM's speed drifts (bench/run.py)
CPU_KEYS = ("cpu_per_req_in_loops", "cpu_per_execution_in_loops")


def figures(report: dict[str, Any]) -> dict[str, tuple[str, float]]:
    """(scenario, metric) rows -> (metric, median): the scenario's own figure and its CPU
    per request in calibration loops, as the bench reported them."""
    found: dict[str, tuple[str, float]] = {}
    for scenario in report["scenarios"]:
        stats = scenario["stats"]
        for metric in (scenario["metric"], *CPU_KEYS):
            if metric in stats:
                found[f"{scenario['name']}|{metric}"] = (metric, float(stats[metric]["median"]))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="the commit to compare against")
    parser.add_argument("--new", help="the commit to measure (default: this working tree)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--new-only", default="", help="extra bench options for this checkout")
    parser.add_argument("bench_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    bench_args = [a for a in args.bench_args if a != "--"]
    folder = Path(tempfile.mkdtemp(prefix="pl-ab-"))
    out_dir = RESULTS / f"ab-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    out_dir.mkdir(parents=True, exist_ok=True)
    trees = {"base": checkout(args.base, folder, "base")}
    trees["new"] = checkout(args.new, folder, "new") if args.new else ROOT
    sides: dict[str, list[dict[str, tuple[str, float]]]] = {"base": [], "new": []}
    try:
        for i in range(args.rounds):
            order = ("base", "new") if i % 2 == 0 else ("new", "base")
            for side in order:
                log(f"round {i + 1}: {side}")
                where = trees[side]
                extra = args.new_only.split() if side == "new" else []
                report = run(where, [*bench_args, *extra], out_dir / f"{side}-{i + 1}.json")
                sides[side].append(figures(report))
    finally:
        for tree in trees.values():
            if tree != ROOT:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)])
        shutil.rmtree(folder, ignore_errors=True)
    print(f"\n{'scenario':<28} {'metric':<22} {'base':>10} {'new':>10} {'new/base':>9}")
    for key in sides["new"][0]:
        name, metric = key.split("|")
        base_runs = [r[key][1] for r in sides["base"] if key in r]
        if not base_runs:
            continue
        base = statistics.median(base_runs)
        new = statistics.median(r[key][1] for r in sides["new"])
        ratio = new / base if base else float("nan")
        print(f"{name:<28} {metric:<22} {base:>10.2f} {new:>10.2f} {ratio:>9.3f}")
    print(f"\nJSON: {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
