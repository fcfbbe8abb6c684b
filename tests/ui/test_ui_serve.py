"""`promptledger serve --workers 2`: a UI sign-in holds whichever worker process answers
(they share one session secret that serve makes when UI_SESSION_SECRET is unset)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
from tests.test_cli import free_port, stop, wait_for_key, wait_healthy


def test_sign_in_holds_across_worker_processes(tmp_path: Path) -> None:
    home = tmp_path / "data"
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("API_KEY", "DATABASE_URL", "REDIS_URL", "UI_SESSION_SECRET")
    }
    env["PROMPTLEDGER_HOME"] = str(home)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prompt_ledger.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        key = wait_for_key(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == f"Web UI: http://127.0.0.1:{port}/ui"
        base = f"http://127.0.0.1:{port}"
        wait_healthy(base)
        cookies = httpx.Cookies()
        # a new connection per request: the kernel spreads them over both workers
        page = httpx.get(f"{base}/ui/sign-in", cookies=cookies)
        cookies.update(page.cookies)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert token
        answer = httpx.post(
            f"{base}/ui/sign-in",
            data={"api_key": key, "csrf_token": token.group(1)},
            cookies=cookies,
        )
        assert answer.status_code == 303
        cookies.update(answer.cookies)
        # Were the secret per worker process, each request would have even odds of landing
        # on the worker that did not sign the cookie: 30 in a row pass by chance 1 in 2^30.
        for _ in range(30):
            response = httpx.get(f"{base}/ui/prompts", cookies=cookies)
            assert response.status_code == 200, response.headers.get("location")
    finally:
        stop(proc)
