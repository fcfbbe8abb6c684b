"""Over real HTTP: the sync client and `promptledger register` against `promptledger serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from tests.client.conftest import MODEL, LiveServer

from prompt_ledger.cli import main
from prompt_ledger.client import (
    ModeMismatchError,
    NotFoundError,
    PromptLedger,
    RenderError,
    UnauthorizedError,
)
from prompt_ledger.config import get_settings

CONSOLE_SCRIPT = Path(sys.executable).parent / "promptledger"


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def test_sync_client_over_http(live_server: LiveServer) -> None:
    name = unique("live.")
    with PromptLedger(live_server.url, live_server.api_key) as client:
        assert client.health().status == "healthy"
        assert client.ready().status == "ready"
        assert client.save_prompt(name, "Hello {{ who }}!").created
        e = client.run(name, variables={"who": "Ada"}, model_name=MODEL, idempotency_key=name)
        assert (e.status, e.response_text) == ("succeeded", "echo: Hello Ada!")
        again = client.run(name, variables={"who": "Ada"}, model_name=MODEL, idempotency_key=name)
        assert (again.id, again.replayed) == (e.id, True)
        with pytest.raises(RenderError) as caught:
            client.run(name, model_name=MODEL)
        assert "who" in caught.value.message
        sub = client.submit(name, variables={"who": "Bob"}, model_name=MODEL)
        assert client.wait(sub, timeout=20).response_text == "echo: Hello Bob!"
        assert [x.id for x in client.iter_executions(prompt_name=name, page_size=1)] == [
            sub.execution_id,
            e.id,
        ]

        code = type(unique("Code"), (), {"GREETING": "Hi {{ who }}"})
        result = client.register_code(code)
        assert [r.change for r in result] == ["created"]
        tracked = f"{code.__name__}.GREETING"
        queued = client.execute(tracked, variables={"who": "Cy"}, model_name=MODEL, mode="async")
        assert client.wait(queued, timeout=20).prompt.mode == "tracking"
        assert client.history(tracked).versions[0].execution_count == 1
        assert client.analytics(mode="tracking").by_mode.tracking.executions >= 1
        assert client.convert(tracked, to="full").mode == "full"
        with pytest.raises(ModeMismatchError):
            client.execute(tracked, model_name=MODEL)
        with pytest.raises(NotFoundError):
            client.describe_prompt(unique("missing."))
    with PromptLedger(live_server.url, "wrong-key") as client, pytest.raises(UnauthorizedError):
        client.list_prompts()


def cli_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("API_KEY", "PROMPTLEDGER_URL", "PROMPTLEDGER_API_KEY", "PROMPTLEDGER_HOME")
    }
    return {**env, **extra}


def register(
    target: str, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CONSOLE_SCRIPT), "register", target, *args],
        cwd=cwd,
        env=env or cli_env(PROMPTLEDGER_HOME=str(cwd / "no-home")),
        capture_output=True,
        text=True,
        timeout=60,
    )


def write_module(folder: Path, module: str, cls: str, welcome: str) -> None:
    source = f"""
        class {cls}:
            WELCOME = {welcome!r}
            FAREWELL = "Bye {{{{ name }}}}."
            retries = 3
    """
    (folder / f"{module}.py").write_text(textwrap.dedent(source))


class TestRegisterCommand:
    def test_reports_each_change(self, live_server: LiveServer, tmp_path: Path) -> None:
        module, cls = unique("app_prompts_"), unique("Prompts")
        flags = ("--url", live_server.url, "--api-key", live_server.api_key)
        write_module(tmp_path, module, cls, "Hello {{ name }}!")
        out = register(f"{module}:{cls}", tmp_path, *flags)
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines() == [
            f"{cls}.FAREWELL: created v1",
            f"{cls}.WELCOME: created v1",
        ]

        write_module(tmp_path, module, cls, "Hi {{ name }}, welcome back!")
        out = register(f"{module}:{cls}", tmp_path, *flags)
        assert f"{cls}.WELCOME: new_version v1 -> v2" in out.stdout.splitlines()

        # the key `serve` stored in PROMPTLEDGER_HOME is found without --api-key
        write_module(tmp_path, module, cls, "Hello {{ name }}!")
        home_env = cli_env(PROMPTLEDGER_HOME=str(live_server.home))
        out = register(f"{module}:{cls}", tmp_path, "--url", live_server.url, env=home_env)
        assert out.returncode == 0, out.stderr
        assert f"{cls}.WELCOME: reactivated v2 -> v1" in out.stdout.splitlines()

    def test_bad_key_fails_with_the_server_s_message(
        self, live_server: LiveServer, tmp_path: Path
    ) -> None:
        write_module(tmp_path, "bad_key_prompts", "Prompts", "x")
        out = register(
            "bad_key_prompts:Prompts", tmp_path, "--url", live_server.url, "--api-key", "nope"
        )
        assert out.returncode == 1
        assert out.stdout == ""
        assert "unauthorized (401)" in out.stderr
        assert "invalid API key" in out.stderr  # the server's own message


class TestRegisterInProcess:
    """The same command through click's runner (no interpreter start-up), over real HTTP."""

    @pytest.fixture(autouse=True)
    def folder(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setattr(sys, "path", list(sys.path))
        for name in ("API_KEY", "PROMPTLEDGER_URL", "PROMPTLEDGER_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("PROMPTLEDGER_HOME", str(tmp_path / "empty-home"))
        get_settings.cache_clear()
        yield tmp_path
        get_settings.cache_clear()

    def invoke(self, *args: str) -> Result:
        return CliRunner().invoke(main, ["register", *args])

    def test_a_whole_module(self, live_server: LiveServer, folder: Path) -> None:
        module = unique("texts_")
        (folder / f"{module}.py").write_text('NOTE = "a note"\nlevel = "x"\n')
        out = self.invoke(module, "--url", live_server.url, "--api-key", live_server.api_key)
        assert out.exit_code == 0, out.output
        assert out.stdout.splitlines() == [f"{module}.NOTE: created v1"]

    def test_url_and_key_from_the_environment(
        self, live_server: LiveServer, folder: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("PROMPTLEDGER_URL", live_server.url)
        monkeypatch.setenv("PROMPTLEDGER_API_KEY", live_server.api_key)
        module, cls = unique("env_prompts_"), unique("Prompts")
        write_module(folder, module, cls, "Hello {{ name }}!")
        assert self.invoke(f"{module}:{cls}").exit_code == 0
        out = self.invoke(f"{module}:{cls}")
        assert out.exit_code == 0, out.output
        assert out.stdout.splitlines() == [
            f"{cls}.FAREWELL: unchanged v1",
            f"{cls}.WELCOME: unchanged v1",
        ]

    def test_unusable_targets_and_settings(self, live_server: LiveServer, folder: Path) -> None:
        flags = ("--url", live_server.url, "--api-key", live_server.api_key)
        out = self.invoke("no_such_module:Prompts", *flags)
        assert out.exit_code == 2
        assert "cannot import 'no_such_module'" in out.stderr
        module, cls = unique("some_prompts_"), unique("Prompts")
        write_module(folder, module, cls, "x")
        out = self.invoke(f"{module}:Missing", *flags)
        assert out.exit_code == 2
        assert "no attribute 'Missing'" in out.stderr
        out = self.invoke(f"{module}:{cls}.retries", *flags)  # an int: not a class or module
        assert out.exit_code == 1
        assert "class or a module" in out.stderr
        out = self.invoke(f"{module}:{cls}", "--url", live_server.url)
        assert out.exit_code == 2
        assert "no API key" in out.stderr
        out = self.invoke(f"{module}:{cls}", "--url", "http://127.0.0.1:9", "--api-key", "k")
        assert out.exit_code == 1
        assert "cannot reach http://127.0.0.1:9" in out.stderr
        assert self.invoke(f"{module}:{cls}", *flags).exit_code == 0
