"""The README's first command, for real: `promptledger serve` in a subprocess."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_serve(
    home: Path, port: int, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("API_KEY", "DATABASE_URL", "REDIS_URL")}
    env.update({"PROMPTLEDGER_HOME": str(home), **(extra_env or {})})
    return subprocess.Popen(
        [sys.executable, "-m", "prompt_ledger.cli", "serve", "--port", str(port)],
        cwd=home.parent,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_key(proc: subprocess.Popen[str], timeout_s: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"serve exited early with {proc.wait()}")
        if match := re.match(r"^API key: (\S+)$", line.strip()):
            return match.group(1)
    raise AssertionError("serve printed no API key")


def wait_healthy(base: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("service never became healthy")


@pytest.fixture
def serve_home(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_serve_on_embedded_default_generates_key_and_keeps_it(serve_home: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = start_serve(serve_home, port)
    try:
        key = wait_for_key(proc)
        wait_healthy(base)
        assert (serve_home / "promptledger.db").is_file()
        assert (serve_home / "api_key").read_text().strip() == key
        r = httpx.put(
            f"{base}/v1/prompts/welcome",
            json={"template_source": "Hello {{ name }}!"},
            headers={"X-API-Key": key},
        )
        assert r.status_code == 201
        assert httpx.get(f"{base}/v1/prompts", headers={"X-API-Key": "nope"}).status_code == 401
    finally:
        stop(proc)

    proc = start_serve(serve_home, port)
    try:
        assert wait_for_key(proc) == key  # printed at every start, same key
        wait_healthy(base)
        r = httpx.get(f"{base}/v1/prompts/welcome", headers={"X-API-Key": key})
        assert r.json()["active_version"]["version_number"] == 1
    finally:
        stop(proc)


def test_serve_never_echoes_a_configured_key(serve_home: Path) -> None:
    port = free_port()
    proc = start_serve(serve_home, port, {"API_KEY": "operator-secret-key-123"})
    try:
        wait_healthy(f"http://127.0.0.1:{port}")
        r = httpx.get(
            f"http://127.0.0.1:{port}/v1/prompts",
            headers={"X-API-Key": "operator-secret-key-123"},
        )
        assert r.status_code == 200
        assert not (serve_home / "api_key").exists()
    finally:
        stop(proc)
        assert proc.stdout is not None
        assert "operator-secret-key-123" not in proc.stdout.read()


def test_migrate_and_seed_commands(tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}"}
    cmd = [sys.executable, "-m", "prompt_ledger.cli"]
    out = subprocess.run([*cmd, "migrate"], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    out = subprocess.run([*cmd, "seed-models"], env=env, capture_output=True, text=True, timeout=60)
    assert "3 added" in out.stdout
    out = subprocess.run([*cmd, "seed-models"], env=env, capture_output=True, text=True, timeout=60)
    assert "0 added" in out.stdout
