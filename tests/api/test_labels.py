"""Labels, traffic splits (SPEC §9.2) and the diff (§9.4), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.api.test_executions import RUN, SUBMIT, body, execution_count, wait_done

from prompt_ledger.db.session import create_sync_engine

REGISTER = "/v1/prompts/register-code"


async def save(client: httpx.AsyncClient, name: str, text: str, **extra: Any) -> int:
    r = await client.put(f"/v1/prompts/{name}", json={"template_source": text, **extra})
    assert r.status_code in (200, 201), r.text
    number: int = r.json()["version"]["version_number"]
    return number


async def three_versions(client: httpx.AsyncClient, name: str = "p") -> None:
    """Versions 1, 2, 3 (``v1`` … ``v3`` plus a variable); 3 is active."""
    for n in (1, 2, 3):
        await save(client, name, f"v{n} {{{{ x }}}}")


async def put_label(client: httpx.AsyncClient, name: str, label: str, **target: Any) -> Any:
    return await client.put(f"/v1/prompts/{name}/labels/{label}", json=target)


async def labels_of(client: httpx.AsyncClient, name: str = "p") -> list[dict[str, Any]]:
    r = await client.get(f"/v1/prompts/{name}/labels")
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def events_of(client: httpx.AsyncClient, name: str = "p") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = (await client.get(f"/v1/prompts/{name}/events")).json()["items"]
    return items


def targets(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {i["label"]: i["split"] or i["version_number"] for i in items}


def expected_bucket(name: str, label: str, subject: str) -> int:
    """SPEC §9.2's bucket, written independently of the service's code."""
    digest = hashlib.sha256((name + "\n" + label + "\n" + subject).encode("utf-8")).digest()
    (first8,) = struct.unpack(">Q", digest[:8])
    return int(first8 % 100)


def err(r: httpx.Response) -> tuple[int, str]:
    return r.status_code, r.json()["error"]["code"]


SPLIT_60_40 = [{"version": 1, "weight": 60}, {"version": 2, "weight": 40}]


class TestListAndSet:
    async def test_a_new_prompt_has_only_active(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello")
        items = await labels_of(client)
        assert [(i["label"], i["version_number"], i["split"]) for i in items] == [
            ("active", 1, None)
        ]
        assert items[0]["updated_at"]

    async def test_a_prompt_with_only_drafts_has_no_active_label(
        self, client: httpx.AsyncClient
    ) -> None:
        await save(client, "p", "draft", activate=False)
        assert await labels_of(client) == []

    async def test_new_label_is_201_move_is_200(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        r = await put_label(client, "p", "production", version=1)
        assert r.status_code == 201, r.text
        assert r.json()["label"] == "production"
        assert r.json()["version_number"] == 1 and r.json()["split"] is None
        r = await put_label(client, "p", "production", version=2)
        assert r.status_code == 200
        assert targets(await labels_of(client)) == {"active": 3, "production": 2}

    async def test_labels_are_listed_active_first_then_by_name(
        self, client: httpx.AsyncClient
    ) -> None:
        await three_versions(client)
        for label in ("staging", "canary", "production"):
            await put_label(client, "p", label, version=1)
        assert [i["label"] for i in await labels_of(client)] == [
            "active",
            "canary",
            "production",
            "staging",
        ]

    async def test_split_label(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        r = await put_label(client, "p", "ab", split=SPLIT_60_40)
        assert r.status_code == 201, r.text
        assert r.json()["split"] == SPLIT_60_40 and r.json()["version_number"] is None
        assert targets(await labels_of(client))["ab"] == SPLIT_60_40
        # a split back to one version
        r = await put_label(client, "p", "ab", version=3)
        assert r.status_code == 200
        assert targets(await labels_of(client))["ab"] == 3

    async def test_every_move_writes_label_moved(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        before = len(await events_of(client))
        await put_label(client, "p", "production", version=1)
        await put_label(client, "p", "production", version=2)
        await put_label(client, "p", "production", split=SPLIT_60_40)
        await put_label(client, "p", "production", version=3)
        moved = (await events_of(client))[before:]
        assert [e["type"] for e in moved] == ["label_moved"] * 4
        assert [(e["label"], e["version_number"], e["split"], e["previous"]) for e in moved] == [
            ("production", 1, None, None),
            ("production", 2, None, {"version_number": 1, "split": None}),
            ("production", None, SPLIT_60_40, {"version_number": 2, "split": None}),
            ("production", 3, None, {"version_number": None, "split": SPLIT_60_40}),
        ]
        assert [e["previous_version_number"] for e in moved] == [None, 1, 2, None]

    async def test_pointing_where_it_points_changes_nothing(
        self, client: httpx.AsyncClient
    ) -> None:
        await three_versions(client)
        first = (await put_label(client, "p", "production", split=SPLIT_60_40)).json()
        events = await events_of(client)
        again = await put_label(client, "p", "production", split=SPLIT_60_40)
        assert again.status_code == 200
        assert again.json() == first
        assert await events_of(client) == events

    async def test_other_events_have_null_label_fields(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello")
        for e in await events_of(client):
            assert e["label"] is None and e["split"] is None and e["previous"] is None

    async def test_labels_work_in_tracking_mode(self, client: httpx.AsyncClient) -> None:
        for text in ("one {{ x }}", "two {{ x }}"):
            r = await client.post(
                REGISTER, json={"prompts": [{"name": "T.P", "template_source": text}]}
            )
            assert r.status_code == 200
        r = await put_label(client, "T.P", "production", version=1)
        assert r.status_code == 201
        assert targets(await labels_of(client, "T.P")) == {"active": 2, "production": 1}


class TestActiveIsALabel:
    async def test_moving_active_is_an_activation(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        r = await put_label(client, "p", "active", version=1)
        assert r.status_code == 200, r.text
        assert r.json()["version_number"] == 1
        assert (await client.get("/v1/prompts/p")).json()["active_version"]["version_number"] == 1
        versions = (await client.get("/v1/prompts/p/versions")).json()["items"]
        assert {v["version_number"]: v["status"] for v in versions} == {
            3: "deprecated",
            2: "deprecated",
            1: "active",
        }
        last = (await events_of(client))[-1]
        assert (last["type"], last["version_number"], last["previous_version_number"]) == (
            "activated",
            1,
            3,
        )
        assert targets(await labels_of(client))["active"] == 1

    async def test_rollback_route_moves_the_active_label(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        r = await client.post("/v1/prompts/p/versions/2:activate")
        assert r.status_code == 200
        items = await labels_of(client)
        assert targets(items)["active"] == 2
        assert items[0]["updated_at"] == (await events_of(client))[-1]["created_at"]

    async def test_active_cannot_be_a_split(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        events = await events_of(client)
        assert err(await put_label(client, "p", "active", split=SPLIT_60_40)) == (
            422,
            "validation_error",
        )
        assert targets(await labels_of(client)) == {"active": 3}
        assert await events_of(client) == events

    async def test_active_cannot_be_deleted(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello")
        r = await client.delete("/v1/prompts/p/labels/active")
        assert err(r) == (422, "validation_error")
        assert targets(await labels_of(client)) == {"active": 1}

    async def test_tracking_mode_active_follows_the_code(self, client: httpx.AsyncClient) -> None:
        for text in ("one", "two"):
            await client.post(
                REGISTER, json={"prompts": [{"name": "T.P", "template_source": text}]}
            )
        r = await put_label(client, "T.P", "active", version=1)
        assert err(r) == (409, "mode_mismatch")
        assert targets(await labels_of(client, "T.P")) == {"active": 2}


class TestBadInput:
    @pytest.mark.parametrize(
        "target",
        [
            {},
            {"version": 1, "split": SPLIT_60_40},
            {"version": 0},
            {"version": "one"},
            {"split": [{"version": 1, "weight": 100}]},  # one entry
            {"split": [{"version": n, "weight": 10} for n in range(1, 12)]},  # eleven
            {"split": [{"version": 1, "weight": 60}, {"version": 2, "weight": 39}]},
            {"split": [{"version": 1, "weight": 60}, {"version": 1, "weight": 40}]},
            {"split": [{"version": 1, "weight": 100}, {"version": 2, "weight": 0}]},
            {"split": [{"version": 1, "weight": 50.5}, {"version": 2, "weight": 49.5}]},
            {"split": [{"version": 1, "weight": 60}, {"version": 9, "weight": 40}]},  # no v9
            {"version": 1, "extra": True},
        ],
    )
    async def test_invalid_target_is_422_and_writes_nothing(
        self, client: httpx.AsyncClient, target: dict[str, Any]
    ) -> None:
        await three_versions(client)
        events = await events_of(client)
        r = await put_label(client, "p", "production", **target)
        assert err(r) == (422, "validation_error"), r.text
        assert targets(await labels_of(client)) == {"active": 3}
        assert await events_of(client) == events

    @pytest.mark.parametrize(
        "label", ["Production", "-x", ".x", "a b", "x" * 65, "é", "a/b", "a%00"]
    )
    async def test_invalid_label_name_is_422(self, client: httpx.AsyncClient, label: str) -> None:
        await three_versions(client)
        r = await put_label(client, "p", label, version=1)
        assert r.status_code in (404, 422)  # a slash is another route
        if r.status_code == 422:
            assert r.json()["error"]["code"] == "validation_error"
        assert targets(await labels_of(client)) == {"active": 3}

    async def test_longest_label_name_is_accepted(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        label = "a" + "b._-9" * 12 + "xyz"
        assert len(label) == 64
        assert (await put_label(client, "p", label, version=1)).status_code == 201

    async def test_unknown_prompt_or_version_is_404(self, client: httpx.AsyncClient) -> None:
        assert err(await put_label(client, "nope", "production", version=1)) == (404, "not_found")
        await three_versions(client)
        events = await events_of(client)
        assert err(await put_label(client, "p", "production", version=4)) == (404, "not_found")
        assert err(await put_label(client, "p", "active", version=4)) == (404, "not_found")
        assert targets(await labels_of(client)) == {"active": 3}
        assert await events_of(client) == events
        assert err(await client.get("/v1/prompts/nope/labels")) == (404, "not_found")

    async def test_labels_need_the_api_key(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        r = await client.get("/v1/prompts/p/labels", headers={"X-API-Key": "wrong"})
        assert r.status_code == 401


class TestDelete:
    async def test_delete_removes_and_logs(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        await put_label(client, "p", "production", split=SPLIT_60_40)
        r = await client.delete("/v1/prompts/p/labels/production")
        assert r.status_code == 204 and r.content == b""
        assert targets(await labels_of(client)) == {"active": 3}
        last = (await events_of(client))[-1]
        assert (last["type"], last["label"], last["version_number"], last["split"]) == (
            "label_moved",
            "production",
            None,
            None,
        )
        assert last["previous"] == {"version_number": None, "split": SPLIT_60_40}
        # and it can be made again
        assert (await put_label(client, "p", "production", version=1)).status_code == 201

    async def test_unknown_label_or_prompt_is_404(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        events = await events_of(client)
        assert err(await client.delete("/v1/prompts/p/labels/staging")) == (404, "not_found")
        assert err(await client.delete("/v1/prompts/nope/labels/staging")) == (404, "not_found")
        assert await events_of(client) == events


class TestGetPromptByLabel:
    async def test_label_version_and_active(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        await put_label(client, "p", "production", version=1)

        async def number(**params: Any) -> int:
            r = await client.get("/v1/prompts/p", params=params)
            assert r.status_code == 200, r.text
            n: int = r.json()["active_version"]["version_number"]
            return n

        assert await number(label="production") == 1
        assert await number(version=2) == 2
        assert await number(label="active") == 3
        assert await number() == 3
        r = await client.get("/v1/prompts/p", params={"label": "production"})
        assert r.json()["active_version"]["template_source"] == "v1 {{ x }}"

    async def test_errors(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        await put_label(client, "p", "ab", split=SPLIT_60_40)
        get = client.get
        assert err(await get("/v1/prompts/p", params={"label": "nope"})) == (404, "not_found")
        assert err(await get("/v1/prompts/p", params={"version": 9})) == (404, "not_found")
        assert err(await get("/v1/prompts/x", params={"label": "ab"})) == (404, "not_found")
        both = {"label": "ab", "version": 1}
        assert err(await get("/v1/prompts/p", params=both)) == (422, "validation_error")
        assert err(await get("/v1/prompts/p", params={"label": "ab"})) == (422, "validation_error")
        assert err(await get("/v1/prompts/p", params={"label": "A"})) == (422, "validation_error")


class TestRunsWithLabels:
    async def test_run_takes_the_labelled_version(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        await put_label(client, "p", "production", version=1)
        r = await client.post(RUN, json=body(label="production", variables={"x": "X"}))
        assert r.status_code == 200, r.text
        e = r.json()
        assert e["version"]["number"] == 1
        assert e["rendered_prompt"] == "v1 X"
        assert (e["label"], e["subject"]) == ("production", None)
        again = (await client.get(f"/v1/executions/{e['id']}")).json()
        assert (again["label"], again["subject"], again["version"]["number"]) == (
            "production",
            None,
            1,
        )

    async def test_label_active(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        r = await client.post(RUN, json=body(label="active", variables={"x": "X"}))
        assert (r.json()["version"]["number"], r.json()["label"]) == (3, "active")

    async def test_subject_picks_the_bucket_of_the_spec(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        split = [
            {"version": 3, "weight": 25},
            {"version": 1, "weight": 50},
            {"version": 2, "weight": 25},
        ]
        await put_label(client, "p", "ab", split=split)

        def expected_version(subject: str) -> int:
            bucket = expected_bucket("p", "ab", subject)
            return 3 if bucket < 25 else 1 if bucket < 75 else 2

        subjects = [f"user-{i}" for i in range(24)]
        assert {expected_version(s) for s in subjects} == {1, 2, 3}  # every range is hit
        for subject in subjects:
            r = await client.post(RUN, json=body(label="ab", subject=subject, variables={"x": "X"}))
            assert r.status_code == 200, r.text
            e = r.json()
            assert e["version"]["number"] == expected_version(subject), subject
            assert (e["label"], e["subject"]) == ("ab", subject)

    async def test_without_subject_the_choice_is_random(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        await put_label(
            client, "p", "ab", split=[{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
        )
        seen = set()
        for _ in range(40):  # both halves missed: 2 * 0.5**40
            r = await client.post(RUN, json=body(label="ab", variables={"x": "X"}))
            seen.add(r.json()["version"]["number"])
        assert seen == {1, 2}

    async def test_submit_and_tracking_execute_take_a_label(
        self, client: httpx.AsyncClient
    ) -> None:
        await three_versions(client)
        await put_label(client, "p", "production", version=2)
        r = await client.post(
            SUBMIT, json=body(label="production", subject="s-1", variables={"x": "X"})
        )
        assert r.status_code == 202, r.text
        e = await wait_done(client, r.json()["execution_id"])
        assert (e["status"], e["version"]["number"], e["label"], e["subject"]) == (
            "succeeded",
            2,
            "production",
            "s-1",
        )
        for text in ("one {{ x }}", "two {{ x }}"):
            await client.post(
                REGISTER, json={"prompts": [{"name": "T.P", "template_source": text}]}
            )
        await put_label(client, "T.P", "production", version=1)
        payload = {"label": "production", "model_name": "gpt-4o-mini", "variables": {"x": "X"}}
        r = await client.post("/v1/prompts/T.P/execute", json=payload)
        assert r.status_code == 200, r.text
        assert (r.json()["version"]["number"], r.json()["label"]) == (1, "production")
        r = await client.post("/v1/prompts/T.P/execute", json=payload | {"mode": "async"})
        assert r.status_code == 202
        done = await wait_done(client, r.json()["execution_id"])
        assert (done["version"]["number"], done["label"]) == (1, "production")

    @pytest.mark.parametrize("route", [RUN, SUBMIT])
    async def test_bad_label_requests_write_no_row(
        self, client: httpx.AsyncClient, route: str
    ) -> None:
        await three_versions(client)
        await put_label(client, "p", "production", version=1)
        cases = [
            (body(label="production", version=1), (422, "validation_error")),
            (body(label="nope"), (404, "not_found")),
            (body(label="Prod"), (422, "validation_error")),
            (body(label="production", subject=""), (422, "validation_error")),
            (body(label="production", subject="x" * 256), (422, "validation_error")),
            (body(label="production", subject="a\x00b"), (422, "validation_error")),
            (body("missing", label="production"), (404, "not_found")),
        ]
        for payload, expected in cases:
            assert err(await client.post(route, json=payload)) == expected, payload
        assert await execution_count(client) == 0

    async def test_tracking_execute_rejects_label_and_version(
        self, client: httpx.AsyncClient
    ) -> None:
        await client.post(REGISTER, json={"prompts": [{"name": "T.P", "template_source": "t"}]})
        payload = {"label": "active", "version": 1, "model_name": "gpt-4o-mini"}
        r = await client.post("/v1/prompts/T.P/execute", json=payload)
        assert err(r) == (422, "validation_error")
        assert await execution_count(client) == 0

    async def test_label_active_without_an_active_version(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "draft", activate=False)
        r = await client.post(RUN, json=body(label="active"))
        assert err(r) == (422, "validation_error")
        assert await execution_count(client) == 0


class TestDiff:
    async def test_changed_template_and_variables(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello {{ name }}!\nBye.\n")
        await save(client, "p", "Hi {{ name }} from {{ place }}!\nBye.\n")
        r = await client.get("/v1/prompts/p/diff", params={"from": 1, "to": 2})
        assert r.status_code == 200, r.text
        d = r.json()
        assert (d["from"], d["to"]) == (1, 2)
        assert d["unified"] == (
            "--- p v1\n"
            "+++ p v2\n"
            "@@ -1,2 +1,2 @@\n"
            "-Hello {{ name }}!\n"
            "+Hi {{ name }} from {{ place }}!\n"
            " Bye.\n"
        )
        assert d["changes"] == {
            "template": True,
            "messages": None,
            "config": False,
            "variables_schema": False,
            "variables_added": ["place"],
            "variables_removed": [],
        }
        back = (await client.get("/v1/prompts/p/diff", params={"from": 2, "to": 1})).json()
        assert back["changes"]["variables_removed"] == ["place"]
        assert back["changes"]["variables_added"] == []

    async def test_same_version_is_an_empty_diff(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello")
        d = (await client.get("/v1/prompts/p/diff", params={"from": 1, "to": 1})).json()
        assert d["unified"] == ""
        assert d["changes"]["template"] is False

    async def test_only_the_final_newline_changed(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello")
        await save(client, "p", "Hello\n")
        d = (await client.get("/v1/prompts/p/diff", params={"from": 1, "to": 2})).json()
        assert d["changes"]["template"] is True
        assert d["unified"] == (
            "--- p v1\n+++ p v2\n@@ -1 +1 @@\n-Hello\n\\ No newline at end of file\n+Hello\n"
        )

    async def test_carriage_returns_are_content(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "a\rb\n")
        await save(client, "p", "a\rc\n")
        d = (await client.get("/v1/prompts/p/diff", params={"from": 1, "to": 2})).json()
        assert d["unified"].splitlines()[3:] == ["-a", "b", "+a", "c"]  # \r splits for display
        assert "-a\rb\n+a\rc\n" in d["unified"]

    async def test_chat_messages_config_and_schema(self, client: httpx.AsyncClient) -> None:
        one = [
            {"role": "system", "content": "Be {{ tone }}."},
            {"type": "placeholder", "name": "history"},
            {"role": "user", "content": "{{ q }}"},
        ]
        two = [one[0], one[1], {"role": "user", "content": "{{ q }} (in {{ lang }})"}]
        schema = {"type": "object", "required": ["q"]}
        for messages, extra in ((one, {}), (two, {"variables_schema": schema})):
            r = await client.put(
                "/v1/prompts/c", json={"type": "chat", "messages": messages, **extra}
            )
            assert r.status_code in (200, 201), r.text
        d = (await client.get("/v1/prompts/c/diff", params={"from": 1, "to": 2})).json()
        assert d["unified"] == (
            "--- c v1\n"
            "+++ c v2\n"
            "@@ -2,4 +2,4 @@\n"
            " Be {{ tone }}.\n"
            " [placeholder: history]\n"
            " [user]\n"
            "-{{ q }}\n"
            "+{{ q }} (in {{ lang }})\n"
        )
        assert d["changes"] == {
            "template": None,
            "messages": True,
            "config": False,
            "variables_schema": True,
            "variables_added": ["lang"],
            "variables_removed": [],
        }
        # only the config changed: the messages are the same, the config is not
        r = await client.put(
            "/v1/prompts/c",
            json={
                "type": "chat",
                "messages": two,
                "variables_schema": schema,
                "config": {"model_name": "gpt-4o"},
            },
        )
        assert r.json()["version"]["version_number"] == 3
        d = (await client.get("/v1/prompts/c/diff", params={"from": 2, "to": 3})).json()
        assert d["unified"] == ""
        assert (d["changes"]["messages"], d["changes"]["config"]) == (False, True)

    async def test_text_against_chat(self, client: httpx.AsyncClient) -> None:
        await save(client, "m", "Hello {{ name }}")
        chat = {"type": "chat", "messages": [{"role": "user", "content": "Hello {{ name }}"}]}
        assert (await client.put("/v1/prompts/m", json=chat)).status_code == 201
        d = (await client.get("/v1/prompts/m/diff", params={"from": 1, "to": 2})).json()
        assert (d["changes"]["template"], d["changes"]["messages"]) == (True, True)
        assert "-Hello {{ name }}\n" in d["unified"] and "+[user]\n" in d["unified"]

    async def test_errors(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello")
        get = client.get
        assert err(await get("/v1/prompts/p/diff", params={"from": 1, "to": 2})) == (
            404,
            "not_found",
        )
        assert err(await get("/v1/prompts/x/diff", params={"from": 1, "to": 1})) == (
            404,
            "not_found",
        )
        for params in ({"from": 1}, {"to": 1}, {"from": 0, "to": 1}, {"from": "a", "to": 1}):
            assert err(await get("/v1/prompts/p/diff", params=params)) == (422, "validation_error")


class TestIdempotencyAcrossTheUpgrade:
    async def test_unused_new_fields_leave_the_fingerprint(
        self, client: httpx.AsyncClient, db_url: str
    ) -> None:
        """A key's fingerprint is what it was before ``label``/``subject`` existed, so a
        request retried across the upgrade replays."""
        await save(client, "p", "Hello")
        payload = body()
        r = await client.post(RUN, json=payload, headers={"Idempotency-Key": "k-1"})
        assert r.status_code == 200
        old_shape = {
            "prompt_name": "p",
            "version": None,
            "variables": {},
            "model_name": "gpt-4o-mini",
            "provider": "openai",
            "params": {
                "temperature": None,
                "top_p": None,
                "top_k": None,
                "max_new_tokens": None,
                "repetition_penalty": None,
            },
            "metadata": {},
        }
        canonical = json.dumps(
            ["POST", RUN, old_shape], sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        engine = create_sync_engine(db_url)
        with engine.connect() as conn:
            stored = conn.scalar(sa.text("SELECT idempotency_fingerprint FROM executions"))
        engine.dispose()
        assert stored == hashlib.sha256(canonical.encode()).hexdigest()
        # with a label, the label is part of it: another body, another fingerprint
        r = await client.post(
            RUN, json=payload | {"label": "active"}, headers={"Idempotency-Key": "k-1"}
        )
        assert err(r) == (422, "idempotency_key_reused")
