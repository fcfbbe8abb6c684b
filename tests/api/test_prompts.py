"""Full-mode registry routes, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from prompt_ledger.config import Settings
from prompt_ledger.db.session import create_engine, session_factory, unit_of_work
from prompt_ledger.db.tables import PromptMode
from prompt_ledger.services.prompts import save_version


async def put(client: httpx.AsyncClient, name: str, text: str, **extra: object) -> httpx.Response:
    return await client.put(f"/v1/prompts/{name}", json={"template_source": text, **extra})


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def make_tracking_prompt(settings: Settings, name: str) -> None:
    engine = create_engine(settings.resolved_database_url)
    async with unit_of_work(session_factory(engine)) as session:
        await save_version(session, name, "code {{ x }}", mode=PromptMode.TRACKING)
    await engine.dispose()


class TestSave:
    async def test_new_prompt_creates_version_one_active(self, client: httpx.AsyncClient) -> None:
        r = await put(client, "welcome", "Hello {{ name }}!", description="greeting")
        assert r.status_code == 201
        body = r.json()
        assert body["name"] == "welcome"
        assert body["mode"] == "full"
        assert body["description"] == "greeting"
        assert body["created"] is True
        version = body["version"]
        assert version["version_number"] == 1
        assert version["status"] == "active"
        assert version["checksum"] == sha("Hello {{ name }}!")
        assert version["variables"] == ["name"]
        assert version["template_source"] == "Hello {{ name }}!"
        assert version["metadata"] == {}
        assert version["created_at"].endswith("Z") or "+00:00" in version["created_at"]

    async def test_same_text_returns_existing_version(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "A {{ a }}")
        r = await put(client, "p", "A {{ a }}")
        assert r.status_code == 200
        assert r.json()["created"] is False
        assert r.json()["version"]["version_number"] == 1
        versions = (await client.get("/v1/prompts/p/versions")).json()["items"]
        assert len(versions) == 1

    async def test_new_text_is_next_version_and_deprecates_previous(
        self, client: httpx.AsyncClient
    ) -> None:
        await put(client, "p", "one")
        r = await put(client, "p", "two")
        assert r.status_code == 201
        assert r.json()["version"]["version_number"] == 2
        items = (await client.get("/v1/prompts/p/versions")).json()["items"]
        assert [(v["version_number"], v["status"]) for v in items] == [
            (2, "active"),
            (1, "deprecated"),
        ]

    @pytest.mark.parametrize("variant", ["one ", " one", "One", "one\n", "one\r\n"])
    async def test_whitespace_or_case_change_is_new_version(
        self, client: httpx.AsyncClient, variant: str
    ) -> None:
        await put(client, "p", "one")
        r = await put(client, "p", variant)
        assert r.status_code == 201
        assert r.json()["version"]["checksum"] == sha(variant)

    async def test_resaving_old_text_reactivates_it(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one")
        await put(client, "p", "two")
        r = await put(client, "p", "one")
        assert r.status_code == 200
        assert (
            r.json()["version"] | {"status": "active", "version_number": 1} == r.json()["version"]
        )
        active = (await client.get("/v1/prompts/p")).json()["active_version"]
        assert active["version_number"] == 1
        statuses = {
            v["version_number"]: v["status"]
            for v in (await client.get("/v1/prompts/p/versions")).json()["items"]
        }
        assert statuses == {1: "active", 2: "deprecated"}

    async def test_activate_false_saves_a_draft(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one")
        r = await put(client, "p", "two", activate=False)
        assert r.status_code == 201
        assert r.json()["version"]["status"] == "draft"
        assert (await client.get("/v1/prompts/p")).json()["active_version"]["version_number"] == 1

    async def test_activate_false_on_known_text_moves_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        await put(client, "p", "one")
        await put(client, "p", "two")
        r = await put(client, "p", "one", activate=False)
        assert r.status_code == 200
        assert r.json()["version"]["status"] == "deprecated"
        assert (await client.get("/v1/prompts/p")).json()["active_version"]["version_number"] == 2

    async def test_new_prompt_as_draft_has_no_active_version(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await put(client, "p", "one", activate=False)
        assert r.json()["version"]["status"] == "draft"
        assert (await client.get("/v1/prompts/p")).json()["active_version"] is None

    async def test_metadata_is_kept_with_the_version(self, client: httpx.AsyncClient) -> None:
        r = await put(client, "p", "one", metadata={"owner": "team-a", "n": [1, 2]})
        assert r.json()["version"]["metadata"] == {"owner": "team-a", "n": [1, 2]}

    async def test_description_is_updated_on_later_save(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one", description="first")
        r = await put(client, "p", "one", description="second")
        assert r.json()["description"] == "second"
        assert (await client.get("/v1/prompts/p")).json()["description"] == "second"

    async def test_variables_are_stored_sorted(self, client: httpx.AsyncClient) -> None:
        text = "{{ b }} {% for d in docs %}{{ d }}{% endfor %} {{ a|upper }}"
        r = await put(client, "p", text)
        assert r.json()["version"]["variables"] == ["a", "b", "docs"]

    async def test_tracking_prompt_cannot_be_saved_with_put(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await make_tracking_prompt(settings, "Code.P")
        r = await put(client, "Code.P", "other")
        assert r.status_code == 409
        error = r.json()["error"]
        assert error["code"] == "mode_mismatch"
        assert "register-code" in error["message"]
        versions = (await client.get("/v1/prompts/Code.P/versions")).json()["items"]
        assert len(versions) == 1


class TestSaveRejects:
    async def test_invalid_template_is_422_and_writes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        r = await put(client, "p", "Hello {{ name ")
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "invalid_template"
        assert (await client.get("/v1/prompts/p")).status_code == 404

    @pytest.mark.parametrize(
        "name", ["-lead", ".dot", "has space", "a/b", "x" * 129, "ünïcode", "semi;colon"]
    )
    async def test_bad_names_are_422(self, client: httpx.AsyncClient, name: str) -> None:
        r = await put(client, name, "text")
        assert r.status_code in (404, 422)  # a slash makes it another (unknown) route
        assert r.json()["error"]["code"] in ("validation_error", "not_found")
        if "/" not in name:
            assert r.status_code == 422

    @pytest.mark.parametrize("name", ["a", "A.b-c_d", "9lives", "x" * 128])
    async def test_good_names_are_accepted(self, client: httpx.AsyncClient, name: str) -> None:
        assert (await put(client, name, "t")).status_code == 201

    @pytest.mark.parametrize(
        "body",
        [
            {},
            {"template_source": ""},
            {"template_source": 5},
            {"template_source": "a\x00b"},
            {"template_source": "ok", "metadata": {"k": "v\x00"}},
            {"template_source": "ok", "metadata": [1]},
            {"template_source": "ok", "activate": "maybe"},
            {"template_source": "ok", "unknown_field": 1},
        ],
    )
    async def test_bad_bodies_are_validation_errors(
        self, client: httpx.AsyncClient, body: dict[str, object]
    ) -> None:
        r = await client.put("/v1/prompts/p", json=body)
        assert r.status_code == 422
        error = r.json()["error"]
        assert error["code"] == "validation_error"
        assert error["message"]
        assert error["details"]["errors"]
        assert (await client.get("/v1/prompts/p")).status_code == 404

    async def test_malformed_json_is_validation_error(self, client: httpx.AsyncClient) -> None:
        r = await client.put(
            "/v1/prompts/p", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"


class TestActivate:
    async def test_rollback_moves_pointer(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one")
        await put(client, "p", "two")
        r = await client.post("/v1/prompts/p/versions/1:activate")
        assert r.status_code == 200
        assert r.json()["active_version"]["version_number"] == 1
        statuses = {
            v["version_number"]: v["status"]
            for v in (await client.get("/v1/prompts/p/versions")).json()["items"]
        }
        assert statuses == {1: "active", 2: "deprecated"}

    async def test_activating_a_draft(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one")
        await put(client, "p", "two", activate=False)
        r = await client.post("/v1/prompts/p/versions/2:activate")
        assert r.json()["active_version"]["status"] == "active"
        assert r.json()["active_version"]["version_number"] == 2

    async def test_activating_the_active_version_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        await put(client, "p", "one")
        r = await client.post("/v1/prompts/p/versions/1:activate")
        assert r.status_code == 200
        events = (await client.get("/v1/prompts/p/events")).json()["items"]
        assert [e["type"] for e in events].count("activated") == 1

    async def test_unknown_version_is_404(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one")
        r = await client.post("/v1/prompts/p/versions/7:activate")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "not_found"

    async def test_unknown_prompt_is_404(self, client: httpx.AsyncClient) -> None:
        r = await client.post("/v1/prompts/nope/versions/1:activate")
        assert r.status_code == 404

    async def test_version_must_be_positive_int(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one")
        for bad in ("0", "x", "-1"):
            r = await client.post(f"/v1/prompts/p/versions/{bad}:activate")
            assert r.status_code == 422, bad
            assert r.json()["error"]["code"] == "validation_error"

    async def test_tracking_prompt_cannot_be_activated(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        await make_tracking_prompt(settings, "Code.P")
        r = await client.post("/v1/prompts/Code.P/versions/1:activate")
        assert r.status_code == 409
        assert r.json()["error"]["code"] == "mode_mismatch"
        assert "register-code" in r.json()["error"]["message"]


class TestRead:
    async def test_get_unknown_prompt_is_404(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/prompts/missing")
        assert r.status_code == 404
        assert r.json() == {
            "error": {
                "code": "not_found",
                "message": "prompt 'missing' does not exist",
                "details": {"name": "missing"},
            }
        }

    async def test_get_prompt_shape(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "Hi {{ x }}", description="d")
        body = (await client.get("/v1/prompts/p")).json()
        assert set(body) == {
            "name",
            "mode",
            "description",
            "created_at",
            "updated_at",
            "active_version",
        }
        assert set(body["active_version"]) == {
            "version_number",
            "checksum",
            "status",
            "template_source",
            "variables",
            "metadata",
            "created_at",
            # SPEC §9.1 additions
            "type",
            "messages",
            "config",
            "variables_schema",
        }

    async def test_versions_of_unknown_prompt_is_404(self, client: httpx.AsyncClient) -> None:
        assert (await client.get("/v1/prompts/missing/versions")).status_code == 404
        assert (await client.get("/v1/prompts/missing/events")).status_code == 404


class TestEvents:
    async def test_history_tells_which_version_was_active(self, client: httpx.AsyncClient) -> None:
        await put(client, "p", "one")
        await put(client, "p", "two")
        await put(client, "p", "three", activate=False)
        await client.post("/v1/prompts/p/versions/1:activate")
        await put(client, "p", "two")
        items = (await client.get("/v1/prompts/p/events")).json()["items"]
        assert [(e["type"], e["version_number"], e["previous_version_number"]) for e in items] == [
            ("created", None, None),
            ("version_created", 1, None),
            ("activated", 1, None),
            ("version_created", 2, None),
            ("activated", 2, 1),
            ("version_created", 3, None),
            ("activated", 1, 2),
            ("activated", 2, 1),
        ]
        times = [e["created_at"] for e in items]
        assert times == sorted(times)


class TestList:
    async def test_lists_by_name_with_mode_filter(
        self, client: httpx.AsyncClient, settings: Settings
    ) -> None:
        for name in ("b", "a", "c"):
            await put(client, name, f"text {name}")
        await make_tracking_prompt(settings, "Code.T")
        body = (await client.get("/v1/prompts")).json()
        assert [p["name"] for p in body["items"]] == ["Code.T", "a", "b", "c"]
        assert body["next_cursor"] is None
        assert "template_source" not in body["items"][1]["active_version"]
        full = (await client.get("/v1/prompts", params={"mode": "full"})).json()["items"]
        assert [p["name"] for p in full] == ["a", "b", "c"]
        tracking = (await client.get("/v1/prompts", params={"mode": "tracking"})).json()["items"]
        assert [p["name"] for p in tracking] == ["Code.T"]

    async def test_cursor_walks_every_prompt_once(self, client: httpx.AsyncClient) -> None:
        names = [f"p{i:02d}" for i in range(7)]
        for name in names:
            await put(client, name, "t")
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            body = (await client.get("/v1/prompts", params=params)).json()
            seen += [p["name"] for p in body["items"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
        assert seen == names

    @pytest.mark.parametrize("params", [{"limit": 501}, {"limit": 0}, {"mode": "other"}])
    async def test_bad_query_is_422(
        self, client: httpx.AsyncClient, params: dict[str, object]
    ) -> None:
        r = await client.get("/v1/prompts", params=params)
        assert r.status_code == 422
        assert r.json()["error"]["code"] == "validation_error"

    async def test_bad_cursor_is_400(self, client: httpx.AsyncClient) -> None:
        r = await client.get("/v1/prompts", params={"cursor": "%%%"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == "bad_request"
