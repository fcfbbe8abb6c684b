"""The README's client examples are real: each is a script in docs/examples/, shown verbatim
in the README, and run here against `promptledger serve` with the stub provider."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from tests.client.conftest import LiveServer
from tests.client.test_client_live import CONSOLE_SCRIPT

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
README = ROOT / "README.md"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
REGISTER_COMMAND = "cd docs/examples && promptledger register tracking_mode:Prompts"

# a line each script must print, so that "exit 0" is not the only check
EXPECTED = {
    "client_basics.py": [
        "healthy",
        "422 render_error",
        "not_found (404)",
        "succeeded echo: Hi Ada!",
    ],
    "full_mode.py": ["False", "succeeded", "echo: Hi Bob, welcome back!"],
    "tracking_mode.py": [
        "Prompts.WELCOME",
        "echo: Hello Ada! Welcome to PromptLedger.",
        "succeeded",
    ],
    "convert_modes.py": ["unchanged", "mode_converted", "register-code"],
    "labels_and_splits.py": [
        "production True echo: Buy now, Ada!",
        "sticky: True",
        "('production', 1)",
        "True []",
        "-Buy now, {{ name }}!",
    ],
    "chat_prompts.py": [
        "chat ['history', 'product', 'question']",
        "gpt-4o-mini {'temperature': 0.7, 'max_new_tokens': 200}",
        "  system: You answer questions about PromptLedger in one line.",
        "  assistant: Hello! What can I do for you?",
        "echo: Hi!\nHow do I roll back?",
        "rejected at $.question",
        "{'model_name': 'gpt-4o'}",
        "succeeded [{'role': 'developer'",
    ],
    "models_and_cost.py": [
        "my-finetune True input_per_mtok=0.3 output_per_mtok=1.2",
        "0.00000570 model",
        "genai-prices ",
        "my-finetune 1 0.00000570",
        "unknown_model",
    ],
    "client_cache.py": [
        "1 Dear Ada, thanks for writing.",
        "True",
        "2",
        "True Hi Bo, we will reply soon.",
    ],
    "streaming_runs.py": [
        "Once upon a time\nsucceeded 4",
        "True",
        "provider_error 'one two'",
    ],
}


def example_env(server: LiveServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "PROMPTLEDGER_HOME")}
    return {
        **env,
        "PROMPTLEDGER_URL": server.url,
        "PROMPTLEDGER_API_KEY": server.api_key,
        "PYTHONDONTWRITEBYTECODE": "1",  # no __pycache__ left in docs/examples
    }


def test_the_readme_shows_every_script_verbatim() -> None:
    readme = README.read_text()
    assert {s.name for s in SCRIPTS} == set(EXPECTED)
    for script in SCRIPTS:
        assert f"```python\n{script.read_text()}```" in readme, f"README lacks {script.name}"
    assert REGISTER_COMMAND in readme


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_script_runs_against_the_service(
    live_server: LiveServer, script: Path, tmp_path: Path
) -> None:
    out = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=example_env(live_server),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    for expected in EXPECTED[script.name]:
        assert expected in out.stdout, (expected, out.stdout)


def test_the_readme_register_command(live_server: LiveServer) -> None:
    out = subprocess.run(
        [str(CONSOLE_SCRIPT), "register", "tracking_mode:Prompts"],
        cwd=EXAMPLES,
        env=example_env(live_server),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    line = r"Prompts\.(FAREWELL|WELCOME): (created|unchanged) v1"
    assert [bool(re.fullmatch(line, x)) for x in out.stdout.splitlines()] == [True, True], (
        out.stdout
    )
