"""``GET /v1/prompts/{name}/resolve``: the version a label or number serves, its ETag and the
304 of a conditional GET (SPEC §9.3), on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from tests.api.test_labels import SPLIT_60_40, err, put_label, save, three_versions

from prompt_ledger.api.conditional import none_match


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def resolve(client: httpx.AsyncClient, name: str = "p", **params: object) -> httpx.Response:
    return await client.get(f"/v1/prompts/{name}/resolve", params=params)


class TestResolve:
    async def test_default_is_the_active_version_tagged_by_its_checksum(
        self, client: httpx.AsyncClient
    ) -> None:
        await three_versions(client)
        r = await resolve(client)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["version_number"] == 3
        assert body["template_source"] == "v3 {{ x }}"
        assert body["checksum"] == sha256("v3 {{ x }}")
        assert body["label"] == "active"
        assert body["prompt"]["name"] == "p" and body["prompt"]["mode"] == "full"
        assert r.headers["ETag"] == f'"{sha256("v3 {{ x }}")}"'
        assert r.headers["Cache-Control"] == "private, no-cache"

    async def test_a_version_number_is_immutable(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        r = await resolve(client, version=1)
        assert r.status_code == 200, r.text
        assert r.json()["version_number"] == 1 and r.json()["label"] is None
        assert r.headers["ETag"] == f'"{sha256("v1 {{ x }}")}"'
        assert "immutable" in r.headers["Cache-Control"]

    async def test_a_label_resolves_to_its_version(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        await put_label(client, "p", "production", version=2)
        r = await resolve(client, label="production")
        assert (r.json()["version_number"], r.json()["label"]) == (2, "production")

    async def test_a_split_answers_every_version_it_names(self, client: httpx.AsyncClient) -> None:
        await three_versions(client)
        await put_label(client, "p", "ab", split=SPLIT_60_40)
        r = await resolve(client, label="ab")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["split"] == SPLIT_60_40
        assert {k: v["template_source"] for k, v in body["versions"].items()} == {
            "1": "v1 {{ x }}",
            "2": "v2 {{ x }}",
        }
        first = r.headers["ETag"]
        # moving the weights changes the tag; the same split keeps it
        assert (await resolve(client, label="ab")).headers["ETag"] == first
        await put_label(
            client, "p", "ab", split=[{"version": 1, "weight": 50}, {"version": 2, "weight": 50}]
        )
        assert (await resolve(client, label="ab")).headers["ETag"] != first


class TestConditional:
    async def test_the_current_etag_is_304_without_a_body(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "Hello {{ name }}")
        etag = (await resolve(client)).headers["ETag"]
        for header in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            r = await client.get("/v1/prompts/p/resolve", headers={"If-None-Match": header})
            assert r.status_code == 304, header
            assert r.content == b""
            assert r.headers["ETag"] == etag

    async def test_a_moved_pointer_answers_the_new_version(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "one")
        etag = (await resolve(client)).headers["ETag"]
        await save(client, "p", "two")
        r = await client.get("/v1/prompts/p/resolve", headers={"If-None-Match": etag})
        assert r.status_code == 200
        assert r.json()["template_source"] == "two"
        assert r.headers["ETag"] != etag


class TestErrors:
    async def test_unknown_prompt_version_and_label_are_404(
        self, client: httpx.AsyncClient
    ) -> None:
        assert err(await resolve(client, "nope")) == (404, "not_found")
        await save(client, "p", "one")
        assert err(await resolve(client, version=9)) == (404, "not_found")
        assert err(await resolve(client, label="production")) == (404, "not_found")

    async def test_only_drafts_is_404_naming_it(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "draft", activate=False)
        r = await resolve(client)
        assert err(r) == (404, "not_found")
        assert "no active version" in r.json()["error"]["message"]

    async def test_label_and_version_together_is_422(self, client: httpx.AsyncClient) -> None:
        await save(client, "p", "one")
        assert err(await resolve(client, label="active", version=1)) == (422, "validation_error")

    @pytest.mark.parametrize("params", [{"version": 0}, {"version": "x"}, {"label": "Bad!"}])
    async def test_malformed_query_is_422(
        self, client: httpx.AsyncClient, params: dict[str, object]
    ) -> None:
        await save(client, "p", "one")
        assert err(await resolve(client, **params)) == (422, "validation_error")


@pytest.mark.parametrize(
    ("header", "matches"),
    [
        (None, False),
        ("", False),
        ('"abc"', True),
        ('W/"abc"', True),
        ('"x" , "abc"', True),
        ('"abcd"', False),
        ("abc", False),  # unquoted is not the tag
        ("*", True),
    ],
)
def test_none_match(header: str | None, matches: bool) -> None:
    assert none_match(header, '"abc"') is matches
