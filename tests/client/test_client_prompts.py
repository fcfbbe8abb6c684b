"""Full-mode registry through the async client, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import datetime

import pytest

from prompt_ledger.client import (
    AsyncPromptLedger,
    BadRequestError,
    InvalidTemplateError,
    NotFoundError,
    Page,
    PromptSummary,
    UnprocessableError,
    ValidationError,
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class TestSave:
    async def test_create_then_same_text_creates_nothing(self, aclient: AsyncPromptLedger) -> None:
        saved = await aclient.save_prompt(
            "welcome", "Hello {{ name }}!", description="greeting", metadata={"team": "growth"}
        )
        assert saved.created is True
        assert (saved.name, saved.mode, saved.description) == ("welcome", "full", "greeting")
        version = saved.version
        assert (version.version_number, version.status) == (1, "active")
        assert version.checksum == sha("Hello {{ name }}!")
        assert version.variables == ["name"]
        assert version.metadata == {"team": "growth"}
        assert isinstance(version.created_at, datetime)
        assert version.created_at.tzinfo is not None

        again = await aclient.save_prompt("welcome", "Hello {{ name }}!")
        assert again.created is False
        assert again.version == version

    async def test_new_text_is_next_version_and_draft_when_not_activated(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await aclient.save_prompt("p", "one")
        two = await aclient.save_prompt("p", "two")
        assert (two.version.version_number, two.version.status) == (2, "active")
        draft = await aclient.save_prompt("p", "three", activate=False)
        assert (draft.version.version_number, draft.version.status) == (3, "draft")
        prompt = await aclient.describe_prompt("p")
        assert prompt.active_version is not None
        assert prompt.active_version.template_source == "two"

    async def test_invalid_template_is_typed(self, aclient: AsyncPromptLedger) -> None:
        with pytest.raises(InvalidTemplateError) as caught:
            await aclient.save_prompt("p", "Hello {{ name ")
        err = caught.value
        assert (err.status, err.code) == (422, "invalid_template")
        assert isinstance(err, UnprocessableError)
        assert err.message
        with pytest.raises(NotFoundError):
            await aclient.describe_prompt("p")

    async def test_bad_name_is_validation_error(self, aclient: AsyncPromptLedger) -> None:
        with pytest.raises(ValidationError) as caught:
            await aclient.save_prompt("-starts-with-dash", "x")
        assert caught.value.code == "validation_error"
        assert caught.value.status == 422

    async def test_a_slash_in_a_name_cannot_reach_another_route(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await aclient.save_prompt("p", "x")
        with pytest.raises(ValidationError) as caught:
            await aclient.describe_prompt("p/versions")
        assert caught.value.status is None  # refused before sending


class TestRead:
    async def test_get_unknown_prompt(self, aclient: AsyncPromptLedger) -> None:
        with pytest.raises(NotFoundError) as caught:
            await aclient.describe_prompt("nope")
        assert (caught.value.status, caught.value.code) == (404, "not_found")
        assert "nope" in caught.value.message

    async def test_only_drafts_has_no_active_version(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("d", "draft text", activate=False)
        assert (await aclient.describe_prompt("d")).active_version is None

    async def test_versions_activate_and_events(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("p", "one")
        await aclient.save_prompt("p", "two")
        versions = await aclient.list_versions("p")
        assert [(v.version_number, v.status) for v in versions] == [
            (2, "active"),
            (1, "deprecated"),
        ]
        assert versions[1].template_source == "one"

        rolled_back = await aclient.activate_version("p", 1)
        assert rolled_back.active_version is not None
        assert rolled_back.active_version.version_number == 1

        events = await aclient.list_events("p")
        assert [(e.type, e.version_number, e.previous_version_number) for e in events] == [
            ("created", None, None),
            ("version_created", 1, None),
            ("activated", 1, None),
            ("version_created", 2, None),
            ("activated", 2, 1),
            ("activated", 1, 2),
        ]
        with pytest.raises(NotFoundError):
            await aclient.activate_version("p", 9)
        with pytest.raises(NotFoundError):
            await aclient.list_versions("missing")
        with pytest.raises(NotFoundError):
            await aclient.list_events("missing")


class TestList:
    async def test_iter_prompts_walks_every_page_once(self, aclient: AsyncPromptLedger) -> None:
        names = [f"p{i:02d}" for i in range(7)]
        for name in names:
            await aclient.save_prompt(name, f"text of {name}")
        seen = [p.name async for p in aclient.iter_prompts(page_size=3)]
        assert seen == names
        first = await aclient.list_prompts(limit=3)
        assert isinstance(first, Page)
        assert all(isinstance(p, PromptSummary) for p in first.items)
        assert first.next_cursor is not None
        assert first.items[0].active_version is not None
        assert first.items[0].active_version.checksum == sha("text of p00")
        second = await aclient.list_prompts(limit=3, cursor=first.next_cursor)
        assert [p.name for p in second.items] == names[3:6]

    async def test_mode_filter(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("full.one", "x")
        await aclient.register_prompts({"Code.ONE": "y"})
        assert [p.name async for p in aclient.iter_prompts(mode="full")] == ["full.one"]
        tracked = await aclient.list_prompts(mode="tracking")
        assert [(p.name, p.mode) for p in tracked.items] == [("Code.ONE", "tracking")]
        assert tracked.next_cursor is None

    async def test_empty_registry(self, aclient: AsyncPromptLedger) -> None:
        assert [p async for p in aclient.iter_prompts()] == []

    async def test_bad_cursor_and_limit(self, aclient: AsyncPromptLedger) -> None:
        with pytest.raises(BadRequestError) as caught:
            await aclient.list_prompts(cursor="!!not-a-cursor!!")
        assert caught.value.status == 400
        with pytest.raises(ValidationError):
            await aclient.list_prompts(limit=501)
