"""One JSON log line per finished execution, and no secret in any log line (SPEC §7)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from tests.api.test_executions import RUN, SUBMIT, body, save, wait_done
from tests.conftest import API_KEY, OPENAI_KEY


def log_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for raw in text.splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines


async def test_finished_executions_log_one_line_each_without_secrets(
    client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
) -> None:
    await save(client, "welcome", "Hello {{ name }}")
    ok = (await client.post(RUN, json=body("welcome", variables={"name": "secret-name"}))).json()
    await save(client, "bad", "[[stub status=401]]")
    failed = (await client.post(RUN, json=body("bad"))).json()
    queued = (await client.post(SUBMIT, json=body("welcome", variables={"name": "x"}))).json()
    await wait_done(client, queued["execution_id"])
    await client.get("/v1/prompts", headers={"X-API-Key": "wrong-key-attempt"})

    out = capsys.readouterr()
    everything = out.out + out.err
    assert OPENAI_KEY not in json.dumps(failed)  # the stub's 401 quotes the key; it is redacted
    assert API_KEY not in everything
    assert OPENAI_KEY not in everything
    assert "wrong-key-attempt" not in everything
    assert "secret-name" not in everything  # variables and rendered text stay out of logs

    finished = [line for line in log_lines(out.err) if line["event"] == "execution_finished"]
    assert sorted(line["execution_id"] for line in finished) == sorted(
        [ok["id"], failed["id"], queued["execution_id"]]
    )
    by_id = {line["execution_id"]: line for line in finished}
    line = by_id[ok["id"]]
    assert {
        "execution_id",
        "prompt",
        "version",
        "provider",
        "model_name",
        "latency_ms",
        "prompt_tokens",
        "response_tokens",
        "status",
        "attempts",
    } <= set(line)
    assert line["prompt"] == "welcome"
    assert line["version"] == 1
    assert line["provider"] == "openai"
    assert line["model_name"] == "gpt-4o-mini"
    assert line["status"] == "succeeded"
    assert line["attempts"] == 1
    assert line["prompt_tokens"] == ok["telemetry"]["prompt_tokens"]
    assert by_id[failed["id"]]["status"] == "failed"
    assert by_id[failed["id"]]["error_type"] == "auth_error"
