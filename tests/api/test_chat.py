"""Chat prompts and model config (SPEC §9.1), through the API on every backend, with the
in-process worker and the stub provider over real HTTP."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from typing import Any

import httpx
import pytest
import rfc8785
import sqlalchemy as sa
from tests.api.test_executions import RUN, SUBMIT, execution_count, wait_done
from tests.api.test_prompts import make_tracking_prompt

from prompt_ledger.config import Settings
from prompt_ledger.testing.stub_provider import stub_stats

SUPPORT = [
    {"role": "system", "content": "You help customers of {{ product }}."},
    {"type": "placeholder", "name": "history"},
    {"role": "user", "content": "{{ question }}"},
]
CONFIG = {
    "model_name": "gpt-4o-mini",
    "params": {"temperature": 0.1, "max_new_tokens": 50},
    "response_format": {"type": "json_object"},
}
SCHEMA = {
    "type": "object",
    "properties": {
        "product": {"type": "string"},
        "question": {"type": "string", "minLength": 1},
        "history": {"type": "array"},
    },
    "required": ["product", "question"],
}
VARIABLES = {
    "product": "Ledger",
    "question": "How do I roll back?",
    "history": [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
    ],
}
EXPECTED_MESSAGES = [
    {"role": "system", "content": "You help customers of Ledger."},
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello! How can I help?"},
    {"role": "user", "content": "How do I roll back?"},
]


def canonical_sha(document: dict[str, Any]) -> str:
    return hashlib.sha256(rfc8785.dumps(document)).hexdigest()


async def put(client: httpx.AsyncClient, name: str, **body: Any) -> httpx.Response:
    return await client.put(f"/v1/prompts/{name}", json=body)


async def save_chat(client: httpx.AsyncClient, name: str = "support", **extra: Any) -> Any:
    r = await put(client, name, type="chat", messages=SUPPORT, **extra)
    assert r.status_code in (200, 201), r.text
    return r.json()


def run_body(name: str = "support", **extra: Any) -> dict[str, Any]:
    return {"prompt_name": name, "variables": VARIABLES, **extra}


class TestSave:
    async def test_chat_version_object(self, client: httpx.AsyncClient) -> None:
        r = await put(
            client, "support", type="chat", messages=SUPPORT, config=CONFIG, variables_schema=SCHEMA
        )
        assert r.status_code == 201, r.text
        version = r.json()["version"]
        assert version["type"] == "chat"
        assert version["template_source"] is None
        assert version["messages"] == SUPPORT
        assert version["config"] == CONFIG
        assert version["variables_schema"] == SCHEMA
        assert version["variables"] == ["history", "product", "question"]
        assert version["checksum"] == canonical_sha(
            {"type": "chat", "messages": SUPPORT, "config": CONFIG, "variables_schema": SCHEMA}
        )
        active = (await client.get("/v1/prompts/support")).json()["active_version"]
        assert active == version
        listed = (await client.get("/v1/prompts")).json()["items"][0]["active_version"]
        assert listed["type"] == "chat" and "messages" not in listed

    async def test_same_content_is_the_same_version(self, client: httpx.AsyncClient) -> None:
        first = await save_chat(client, config=CONFIG)
        # the same content with members in another order and the config's nulls spelt out
        reordered = [
            {"content": m["content"], "role": m["role"]} if "role" in m else m for m in SUPPORT
        ]
        r = await put(
            client,
            "support",
            type="chat",
            messages=reordered,
            config={**CONFIG, "provider": None},
        )
        assert r.status_code == 200, r.text
        assert r.json()["created"] is False
        assert r.json()["version"]["checksum"] == first["version"]["checksum"]

    async def test_config_only_change_is_a_new_version(self, client: httpx.AsyncClient) -> None:
        first = await save_chat(client, config=CONFIG)
        second = await save_chat(client, config={**CONFIG, "model_name": "gpt-4o"})
        third = await save_chat(client)  # no config at all
        assert [first["created"], second["created"], third["created"]] == [True, True, True]
        numbers = [v["version"]["version_number"] for v in (first, second, third)]
        assert numbers == [1, 2, 3]
        assert third["version"]["config"] is None
        assert third["version"]["checksum"] == canonical_sha({"type": "chat", "messages": SUPPORT})

    async def test_plain_text_keeps_the_sha256_of_its_bytes(
        self, client: httpx.AsyncClient
    ) -> None:
        text = "Hello {{ name }}!"
        plain = (await put(client, "t", template_source=text)).json()["version"]
        assert plain["checksum"] == hashlib.sha256(text.encode()).hexdigest()
        assert plain["type"] == "text"
        assert plain["config"] is None and plain["messages"] is None
        empty = await put(client, "t", template_source=text, config={})  # empty = no config
        assert empty.status_code == 200 and empty.json()["created"] is False
        configured = (await put(client, "t", template_source=text, config=CONFIG)).json()
        assert configured["created"] is True
        assert configured["version"]["checksum"] == canonical_sha(
            {"type": "text", "template_source": text, "config": CONFIG}
        )
        with_schema = (await put(client, "t", template_source=text, variables_schema={})).json()
        assert with_schema["version"]["checksum"] == canonical_sha(
            {"type": "text", "template_source": text, "variables_schema": {}}
        )

    @pytest.mark.parametrize(
        "body",
        [
            {"type": "chat", "template_source": "x", "messages": SUPPORT},
            {"type": "chat"},
            {"type": "chat", "messages": []},
            {"template_source": "x", "messages": SUPPORT},
            {"type": "chat", "messages": [{"role": "robot", "content": "x"}]},
            {"type": "chat", "messages": [{"role": "user"}]},
            {"type": "chat", "messages": [{"role": "user", "content": "x", "name": "n"}]},
            {"type": "chat", "messages": [{"type": "placeholder", "name": "a"}] * 2},
            {"type": "chat", "messages": [{"type": "placeholder", "name": "not an id"}]},
            {"type": "chat", "messages": [{"role": "user", "content": "a\u0000b"}]},
            {"type": "sql", "template_source": "x"},
            {"template_source": "x", "config": {"model_name": ""}},
            {"template_source": "x", "config": {"provider": "acme"}},
            {"template_source": "x", "config": {"params": {"temperature": 9}}},
            {"template_source": "x", "config": {"params": {"seed": 1}}},
            {"template_source": "x", "config": {"stream": True}},
            {"template_source": "x", "config": {"response_format": "json"}},
            {"template_source": "x", "variables_schema": {"type": "nope"}},
            {"template_source": "x", "variables_schema": {"minLength": -1}},
            {"template_source": "x", "variables_schema": {"const": 2**60}},
        ],
    )
    async def test_bad_bodies_are_422_and_write_nothing(
        self, client: httpx.AsyncClient, body: dict[str, Any]
    ) -> None:
        r = await put(client, "bad", **body)
        assert r.status_code == 422, r.text
        assert r.json()["error"]["code"] == "validation_error"
        assert (await client.get("/v1/prompts/bad")).status_code == 404

    async def test_invalid_schema_names_its_path(self, client: httpx.AsyncClient) -> None:
        schema = {"type": "object", "properties": {"n": {"type": "integer", "minimum": "0"}}}
        r = await put(client, "bad", template_source="x", variables_schema=schema)
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"]["path"] == "$.properties.n.minimum"

    async def test_invalid_jinja_in_a_message(self, client: httpx.AsyncClient) -> None:
        messages = [{"role": "system", "content": "ok"}, {"role": "user", "content": "{{ x"}]
        r = await put(client, "bad", type="chat", messages=messages)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_template"
        assert (await client.get("/v1/prompts/bad")).status_code == 404


class TestRun:
    async def test_sync_sends_the_rendered_messages(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save_chat(client, config=CONFIG)
        r = await client.post(RUN, json=run_body(params={"temperature": 0.7}))
        assert r.status_code == 200, r.text
        e = r.json()
        assert e["status"] == "succeeded", e
        assert e["rendered_messages"] == EXPECTED_MESSAGES
        assert e["rendered_prompt"] == "\n\n".join(
            f"{m['role']}: {m['content']}" for m in EXPECTED_MESSAGES
        )
        assert e["model"] == {"provider": "openai", "name": "gpt-4o-mini"}  # from the config
        # request params over the config's
        assert e["params"] == {"temperature": 0.7, "max_new_tokens": 50}
        sent = stub_stats(stub_url)["last_body"]
        assert sent["messages"] == EXPECTED_MESSAGES
        assert sent["response_format"] == {"type": "json_object"}
        assert sent["temperature"] == 0.7 and sent["max_tokens"] == 50
        assert sent["model"] == "gpt-4o-mini"
        again = (await client.get(f"/v1/executions/{e['id']}")).json()
        assert again["rendered_messages"] == EXPECTED_MESSAGES
        assert again["params"] == e["params"]

    async def test_text_version_with_config(self, client: httpx.AsyncClient, stub_url: str) -> None:
        r = await put(client, "t", template_source="Hi {{ name }}", config=CONFIG)
        assert r.status_code == 201
        run = await client.post(RUN, json={"prompt_name": "t", "variables": {"name": "Ada"}})
        e = run.json()
        assert e["status"] == "succeeded", e
        assert e["rendered_messages"] is None
        assert e["params"] == {"temperature": 0.1, "max_new_tokens": 50}
        sent = stub_stats(stub_url)["last_body"]
        assert sent["messages"] == [{"role": "user", "content": "Hi Ada"}]
        assert sent["response_format"] == {"type": "json_object"}

    async def test_request_model_overrides_the_config(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save_chat(client, config=CONFIG)
        e = (await client.post(RUN, json=run_body(model_name="gpt-4o"))).json()
        assert e["model"]["name"] == "gpt-4o"
        assert stub_stats(stub_url)["last_body"]["model"] == "gpt-4o"

    async def test_text_without_config_sends_no_response_format(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await put(client, "t", template_source="plain")
        run = await client.post(RUN, json={"prompt_name": "t", "model_name": "gpt-4o-mini"})
        assert run.json()["params"] == {}
        assert "response_format" not in stub_stats(stub_url)["last_body"]

    async def test_submit_runs_the_messages_on_the_worker(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        await save_chat(client, config=CONFIG)
        r = await client.post(SUBMIT, json=run_body())
        assert r.status_code == 202, r.text
        e = await wait_done(client, r.json()["execution_id"])
        assert e["status"] == "succeeded", e
        assert e["execution_mode"] == "async"
        assert e["rendered_messages"] == EXPECTED_MESSAGES
        assert e["params"] == {"temperature": 0.1, "max_new_tokens": 50}
        sent = stub_stats(stub_url)["last_body"]
        assert sent["messages"] == EXPECTED_MESSAGES
        assert sent["response_format"] == {"type": "json_object"}

    async def test_an_empty_history_is_fine(self, client: httpx.AsyncClient) -> None:
        await save_chat(client, config=CONFIG)
        e = (await client.post(RUN, json=run_body(variables={**VARIABLES, "history": []}))).json()
        assert e["status"] == "succeeded"
        assert [m["role"] for m in e["rendered_messages"]] == ["system", "user"]

    async def test_history_is_data_not_a_template(self, client: httpx.AsyncClient) -> None:
        await save_chat(client, config=CONFIG)
        history = [{"role": "user", "content": "{{ product }} {% raw %}"}]
        e = (
            await client.post(RUN, json=run_body(variables={**VARIABLES, "history": history}))
        ).json()
        assert e["rendered_messages"][1] == history[0]


class TestRejectedRuns:
    """Each is a 4xx before any row: nothing is written."""

    @pytest.mark.parametrize("route", [RUN, SUBMIT])
    @pytest.mark.parametrize(
        ("history", "detail"),
        [
            (None, {"variable": "history"}),
            ("hi", {"variable": "history"}),
            ([{"role": "user"}], {"variable": "history", "index": 0}),
            ([{"role": "robot", "content": "x"}], {"variable": "history", "index": 0}),
            ([{"role": "user", "content": 3}], {"variable": "history", "index": 0}),
            ([{"role": "user", "content": "x", "extra": 1}], {"variable": "history", "index": 0}),
            ([{"role": "user", "content": "ok"}, "x"], {"variable": "history", "index": 1}),
        ],
    )
    async def test_missing_or_malformed_placeholder(
        self,
        client: httpx.AsyncClient,
        route: str,
        history: Any,
        detail: dict[str, Any],
    ) -> None:
        await save_chat(client, config=CONFIG)
        variables = {k: v for k, v in VARIABLES.items() if k != "history"}
        if history is not None:
            variables["history"] = history
        r = await client.post(route, json=run_body(variables=variables))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "render_error"
        assert error["details"] == detail
        assert "history" in error["message"]
        assert await execution_count(client) == 0

    async def test_missing_variable_in_a_message(self, client: httpx.AsyncClient) -> None:
        await save_chat(client, config=CONFIG)
        variables = {"history": [], "product": "Ledger"}
        r = await client.post(RUN, json=run_body(variables=variables))
        assert r.status_code == 422
        assert r.json()["error"]["details"] == {"variable": "question"}
        assert await execution_count(client) == 0

    async def test_only_an_empty_placeholder_is_a_render_error(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await put(client, "h", type="chat", messages=[{"type": "placeholder", "name": "h"}])
        assert r.status_code == 201
        run = await client.post(
            RUN, json={"prompt_name": "h", "model_name": "gpt-4o-mini", "variables": {"h": []}}
        )
        assert run.status_code == 422
        assert run.json()["error"]["code"] == "render_error"
        assert await execution_count(client) == 0

    async def test_messages_over_200kb_are_too_large(self, client: httpx.AsyncClient) -> None:
        await save_chat(client, config=CONFIG)
        history = [{"role": "user", "content": "x" * 150_000}]
        variables = {**VARIABLES, "question": "y" * 60_000, "history": history}
        r = await client.post(RUN, json=run_body(variables=variables))
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "prompt_too_large"
        assert r.json()["error"]["details"]["limit"] == 204_800
        assert await execution_count(client) == 0

    @pytest.mark.parametrize("route", [RUN, SUBMIT])
    async def test_variables_failing_the_schema(
        self, client: httpx.AsyncClient, route: str
    ) -> None:
        await save_chat(client, config=CONFIG, variables_schema=SCHEMA)
        bad = {**VARIABLES, "question": 42}
        r = await client.post(route, json=run_body(variables=bad))
        assert r.status_code == 422, r.text
        error = r.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"]["path"] == "$.question"
        assert "$.question" in error["message"]
        missing = {k: v for k, v in VARIABLES.items() if k != "product"}
        r = await client.post(route, json=run_body(variables=missing))
        assert r.status_code == 422
        assert r.json()["error"]["details"]["path"] == "$.product"
        assert await execution_count(client) == 0
        ok = await client.post(route, json=run_body())
        assert ok.status_code in (200, 202), ok.text

    async def test_unresolvable_ref_is_a_validation_error(self, client: httpx.AsyncClient) -> None:
        schema = {"$ref": "https://example.invalid/schema.json"}
        await put(client, "t", template_source="x", variables_schema=schema)
        r = await client.post(RUN, json={"prompt_name": "t", "model_name": "gpt-4o-mini"})
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"
        assert await execution_count(client) == 0

    async def test_no_model_anywhere_is_a_validation_error(self, client: httpx.AsyncClient) -> None:
        await save_chat(client)  # no config
        r = await client.post(RUN, json=run_body())
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "validation_error"
        assert error["details"] == {"field": "model_name"}
        await save_chat(client, config={"params": {"temperature": 0.3}})  # config without model
        assert (await client.post(RUN, json=run_body())).status_code == 422
        assert await execution_count(client) == 0

    async def test_unknown_config_model(self, client: httpx.AsyncClient) -> None:
        await save_chat(client, config={"model_name": "gpt-9"})
        r = await client.post(RUN, json=run_body())
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "unknown_model"
        assert r.json()["error"]["details"] == {"provider": "openai", "model_name": "gpt-9"}
        assert await execution_count(client) == 0

    async def test_config_max_new_tokens_over_the_model_limit(
        self, client: httpx.AsyncClient
    ) -> None:
        await save_chat(
            client, config={"model_name": "gpt-4-turbo", "params": {"max_new_tokens": 5000}}
        )
        r = await client.post(RUN, json=run_body())
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"
        # a request value under the limit wins over the config's
        ok = await client.post(RUN, json=run_body(params={"max_new_tokens": 100}))
        assert ok.status_code == 200
        assert await execution_count(client) == 1


class TestTracking:
    async def test_register_and_execute_a_chat_prompt(
        self, client: httpx.AsyncClient, stub_url: str
    ) -> None:
        item = {"name": "Bot.SUPPORT", "type": "chat", "messages": SUPPORT, "config": CONFIG}
        checksum = canonical_sha({"type": "chat", "messages": SUPPORT, "config": CONFIG})
        r = await client.post(
            "/v1/prompts/register-code",
            json={
                "prompts": [
                    {**item, "template_hash": checksum},
                    {"name": "Bot.PLAIN", "template_source": "hi"},
                ]
            },
        )
        assert r.status_code == 200, r.text
        results = {x["name"]: x for x in r.json()["results"]}
        assert results["Bot.SUPPORT"]["checksum"] == checksum
        assert results["Bot.SUPPORT"]["change"] == "created"
        again = await client.post("/v1/prompts/register-code", json={"prompts": [item]})
        assert again.json()["results"][0]["change"] == "unchanged"
        changed = {**item, "config": {**CONFIG, "model_name": "gpt-4o"}}
        new = await client.post("/v1/prompts/register-code", json={"prompts": [changed]})
        assert new.json()["results"][0]["change"] == "new_version"
        back = await client.post("/v1/prompts/register-code", json={"prompts": [item]})
        assert back.json()["results"][0]["change"] == "reactivated"

        sync = await client.post(
            "/v1/prompts/Bot.SUPPORT/execute", json={"variables": VARIABLES, "mode": "sync"}
        )
        assert sync.status_code == 200, sync.text
        assert sync.json()["rendered_messages"] == EXPECTED_MESSAGES
        assert sync.json()["model"]["name"] == "gpt-4o-mini"
        queued = await client.post(
            "/v1/prompts/Bot.SUPPORT/execute", json={"variables": VARIABLES, "mode": "async"}
        )
        assert queued.status_code == 202, queued.text
        done = await wait_done(client, queued.json()["execution_id"])
        assert done["status"] == "succeeded"
        assert done["rendered_messages"] == EXPECTED_MESSAGES
        assert stub_stats(stub_url)["last_body"]["response_format"] == {"type": "json_object"}
        history = (await client.get("/v1/prompts/Bot.SUPPORT/history")).json()
        assert {v["template_hash"] for v in history["versions"]} >= {checksum}

    async def test_wrong_template_hash_writes_nothing(self, client: httpx.AsyncClient) -> None:
        item = {"name": "Bot.SUPPORT", "type": "chat", "messages": SUPPORT}
        sha_of_nothing = hashlib.sha256(b"").hexdigest()
        r = await client.post(
            "/v1/prompts/register-code",
            json={"prompts": [{**item, "template_hash": sha_of_nothing}]},
        )
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"
        assert r.json()["error"]["details"]["expected"] == canonical_sha(
            {"type": "chat", "messages": SUPPORT}
        )
        assert (await client.get("/v1/prompts/Bot.SUPPORT")).status_code == 404

    async def test_invalid_schema_rolls_the_batch_back(self, client: httpx.AsyncClient) -> None:
        r = await client.post(
            "/v1/prompts/register-code",
            json={
                "prompts": [
                    {"name": "A", "template_source": "fine"},
                    {"name": "B", "template_source": "x", "variables_schema": {"type": 3}},
                ]
            },
        )
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"
        assert (await client.get("/v1/prompts/A")).status_code == 404

    async def test_tracking_prompt_still_refuses_put(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await make_tracking_prompt(settings, "code")
        r = await put(client, "code", type="chat", messages=SUPPORT)
        assert r.status_code == 409


class TestRenderHoldsNoLock:
    async def test_a_slow_chat_render_takes_no_write_lock(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        """SQLite: while a chat version renders (between the resolve and the insert), another
        connection can always take the write lock within 100 ms; the insert and finish hold
        it for milliseconds only."""
        url = sa.make_url(settings.database_url)
        if url.get_backend_name() != "sqlite":
            pytest.skip("the one-writer lock is SQLite's (PostgreSQL: no connection is held)")
        # ~0.3 s on a fast moment of this box, well inside the 2 s render limit when loaded
        slow = "{% for i in range(5000) %}{% for j in range(500) %}{% endfor %}{% endfor %}ok"
        messages = [{"role": "system", "content": "fast"}, {"role": "user", "content": slow}]
        await put(client, "slow", type="chat", messages=messages, config=CONFIG)
        done = threading.Event()
        probes: list[bool] = []

        def probe() -> None:
            while not done.is_set():
                conn = sqlite3.connect(str(url.database), timeout=0.1, isolation_level=None)
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    conn.execute("ROLLBACK")
                    probes.append(True)
                except sqlite3.OperationalError:
                    probes.append(False)
                finally:
                    conn.close()
                time.sleep(0.01)

        prober = threading.Thread(target=probe)
        started = time.monotonic()
        prober.start()
        try:
            response = await client.post(RUN, json={"prompt_name": "slow"})
        finally:
            done.set()
            prober.join()
        assert response.status_code == 200, response.text
        assert response.json()["rendered_messages"][1]["content"] == "ok"
        assert time.monotonic() - started > 0.15, "the render was too fast to show anything"
        # A render holding the lock would fail every probe of its 0.2 s and more; the insert
        # and the finish may each cost one probe on a loaded machine (its 100 ms timeout).
        assert probes.count(True) >= 3, probes
        assert probes.count(False) <= 2, probes
