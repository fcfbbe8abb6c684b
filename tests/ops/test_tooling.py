"""pre-commit runs exactly the commands ``make lint typecheck`` (and so CI) runs."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def make_recipe(target: str) -> list[str]:
    """The commands of a Makefile target, with ``$(UV)`` read as ``uv``."""
    lines = (ROOT / "Makefile").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:", line))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        commands.append(line.strip().replace("$(UV)", "uv"))
    return commands


def test_pre_commit_hooks_are_the_makefile_commands() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    hooks = repo["hooks"]
    assert [hook["entry"] for hook in hooks] == make_recipe("lint") + make_recipe("typecheck")
    for hook in hooks:
        assert hook["language"] == "system"
        assert hook["pass_filenames"] is False  # whole tree, as make does


def test_make_stack_runs_the_topology_module() -> None:
    assert make_recipe("stack") == ["uv run --locked python -m prompt_ledger.testing.stack"]
