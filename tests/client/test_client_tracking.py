"""Code-first mode through the async client: register_code, execute, history, analytics,
conversion between modes."""

from __future__ import annotations

import types
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from tests.client.conftest import BASE, MODEL
from tests.conftest import API_KEY

from prompt_ledger.client import (
    AsyncPromptLedger,
    CodePrompt,
    Execution,
    InvalidTemplateError,
    ModeMismatchError,
    NotFoundError,
    RenderError,
    Submission,
    ValidationError,
    collect_prompts,
    template_hash,
)


def make_prompts_class() -> type:
    class Prompts:
        WELCOME = "Hello {{ name }}!"
        FAREWELL = "Bye {{ name }}."
        lower_case = "not a prompt"
        _PRIVATE = "not a prompt"
        MAX_TOKENS = 200  # not a str

        def METHOD(self) -> str:  # an upper-case method is no prompt either
            return "x"

    return Prompts


def summary(results: list) -> list[tuple[str, str, int, int | None]]:  # type: ignore[type-arg]
    return [(r.name, r.change, r.version_number, r.previous_version_number) for r in results]


class TestCollect:
    def test_class_attributes_by_convention(self) -> None:
        found = collect_prompts(make_prompts_class())
        assert [(p.name, p.template_source) for p in found] == [
            ("Prompts.FAREWELL", "Bye {{ name }}."),
            ("Prompts.WELCOME", "Hello {{ name }}!"),
        ]
        body = found[1].to_json()
        assert body["template_hash"] == template_hash("Hello {{ name }}!")
        assert len(body["template_hash"]) == 64

    def test_inherited_attributes_take_the_subclass_name(self) -> None:
        class Base:
            SHARED = "shared"

        class Mine(Base):
            OWN = "own"

        assert [p.name for p in collect_prompts(Mine)] == ["Mine.OWN", "Mine.SHARED"]

    def test_module_uses_its_last_name_and_prefix_overrides(self) -> None:
        module = types.ModuleType("myapp.prompts")
        module.GREETING = "hi"  # type: ignore[attr-defined]
        module.helper = "no"  # type: ignore[attr-defined]
        assert [p.name for p in collect_prompts(module)] == ["prompts.GREETING"]
        assert [p.name for p in collect_prompts(module, prefix="app")] == ["app.GREETING"]
        assert [p.name for p in collect_prompts(module, prefix="")] == ["GREETING"]

    def test_refuses_what_it_cannot_read(self) -> None:
        with pytest.raises(TypeError, match="class or a module"):
            collect_prompts(make_prompts_class()())  # type: ignore[arg-type]

        class Empty:
            nothing = "x"

        with pytest.raises(ValueError, match="no UPPER_CASE"):
            collect_prompts(Empty)


class TestRegisterCode:
    async def test_change_detection_cycle(self, aclient: AsyncPromptLedger) -> None:
        Prompts = make_prompts_class()
        created = await aclient.register_code(Prompts)
        assert summary(created) == [
            ("Prompts.FAREWELL", "created", 1, None),
            ("Prompts.WELCOME", "created", 1, None),
        ]
        assert created[1].checksum == template_hash("Hello {{ name }}!")
        assert aclient.registered["Prompts.WELCOME"].version_number == 1

        assert [r.change for r in await aclient.register_code(Prompts)] == [
            "unchanged",
            "unchanged",
        ]

        Prompts.WELCOME = "Hi {{ name }}, welcome back!"
        changed = await aclient.register_code(Prompts)
        assert summary(changed) == [
            ("Prompts.FAREWELL", "unchanged", 1, 1),
            ("Prompts.WELCOME", "new_version", 2, 1),
        ]
        assert aclient.registered["Prompts.WELCOME"].version_number == 2

        Prompts.WELCOME = "Hello {{ name }}!"
        back = await aclient.register_code(Prompts)
        assert summary(back)[1] == ("Prompts.WELCOME", "reactivated", 1, 2)
        assert aclient.registered["Prompts.WELCOME"].change == "reactivated"

        prompt = await aclient.describe_prompt("Prompts.WELCOME")
        assert prompt.mode == "tracking"
        assert prompt.active_version is not None
        assert prompt.active_version.version_number == 1

    async def test_module_and_explicit_prompts(self, aclient: AsyncPromptLedger) -> None:
        module = types.ModuleType("myapp.support")
        module.REPLY = "Dear {{ customer }}"  # type: ignore[attr-defined]
        results = await aclient.register_code(module, metadata={"source": "myapp.support"})
        assert summary(results) == [("support.REPLY", "created", 1, None)]
        versions = await aclient.list_versions("support.REPLY")
        assert versions[0].metadata == {"source": "myapp.support"}

        described = CodePrompt("Mail.SUBJECT", "Re: {{ topic }}", description="subject line")
        await aclient.register_prompts([described])
        assert (await aclient.describe_prompt("Mail.SUBJECT")).description == "subject line"
        await aclient.register_prompts({"Mail.BODY": "body"})
        assert set(aclient.registered) == {"support.REPLY", "Mail.SUBJECT", "Mail.BODY"}

    async def test_batch_with_a_full_mode_name_writes_nothing(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await aclient.save_prompt("owned", "full text")
        with pytest.raises(ModeMismatchError) as caught:
            await aclient.register_prompts({"A.NEW": "x", "owned": "y"})
        assert (caught.value.status, caught.value.code) == (409, "mode_mismatch")
        with pytest.raises(NotFoundError):
            await aclient.describe_prompt("A.NEW")
        assert aclient.registered == {}

    async def test_invalid_texts_and_empty_batches(self, aclient: AsyncPromptLedger) -> None:
        with pytest.raises(InvalidTemplateError):
            await aclient.register_prompts({"Bad.T": "{% if %}"})
        with pytest.raises(ValueError, match="nothing to register"):
            await aclient.register_prompts({})
        with pytest.raises(ValidationError):
            await aclient.register_prompts({"-bad name": "x"})


class TestExecute:
    async def test_sync_and_async(self, aclient: AsyncPromptLedger) -> None:
        await aclient.register_code(make_prompts_class())
        e = await aclient.execute("Prompts.WELCOME", variables={"name": "Ada"}, model_name=MODEL)
        assert isinstance(e, Execution)
        assert (e.status, e.prompt.mode, e.response_text) == (
            "succeeded",
            "tracking",
            "echo: Hello Ada!",
        )
        sub = await aclient.execute(
            "Prompts.FAREWELL", variables={"name": "Bob"}, model_name=MODEL, mode="async"
        )
        assert isinstance(sub, Submission)
        done = await aclient.wait(sub, timeout=10)
        assert (done.execution_mode, done.response_text) == ("async", "echo: Bye Bob.")

    async def test_pins_the_version_this_process_registered(
        self, app_and_aclient: tuple[FastAPI, AsyncPromptLedger]
    ) -> None:
        app, old_deploy = app_and_aclient
        await old_deploy.register_prompts({"Bot.ASK": "v1 {{ q }}"})
        transport = httpx.ASGITransport(app=app)
        async with AsyncPromptLedger(BASE, API_KEY, transport=transport) as new_deploy:
            await new_deploy.register_prompts({"Bot.ASK": "v2 {{ q }}"})
            newest = await new_deploy.execute("Bot.ASK", variables={"q": "?"}, model_name=MODEL)
            assert newest.version.number == 2
        pinned = await old_deploy.execute("Bot.ASK", variables={"q": "?"}, model_name=MODEL)
        assert (pinned.version.number, pinned.rendered_prompt) == (1, "v1 ?")
        active = await old_deploy.execute(
            "Bot.ASK", variables={"q": "?"}, model_name=MODEL, version="active"
        )
        assert active.version.number == 2
        explicit = await old_deploy.execute(
            "Bot.ASK", variables={"q": "?"}, model_name=MODEL, version=2
        )
        assert explicit.version.number == 2

    async def test_unregistered_name_runs_the_active_version(
        self, aclient: AsyncPromptLedger, app_and_aclient: tuple[FastAPI, AsyncPromptLedger]
    ) -> None:
        app, _ = app_and_aclient
        transport = httpx.ASGITransport(app=app)
        async with AsyncPromptLedger(BASE, API_KEY, transport=transport) as other:
            await other.register_prompts({"X.P": "one"})
            await other.register_prompts({"X.P": "two"})
        e = await aclient.execute("X.P", model_name=MODEL)
        assert e.version.number == 2

    async def test_errors_and_idempotency(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("full.p", "full")
        with pytest.raises(ModeMismatchError) as caught:
            await aclient.execute("full.p", model_name=MODEL)
        assert "executions:run" in caught.value.message
        await aclient.register_prompts({"T.P": "Hi {{ who }}"})
        with pytest.raises(RenderError):
            await aclient.execute("T.P", model_name=MODEL)
        with pytest.raises(NotFoundError):
            await aclient.execute("T.MISSING", model_name=MODEL)
        first = await aclient.execute(
            "T.P", model_name=MODEL, variables={"who": "x"}, idempotency_key="t-1"
        )
        again = await aclient.execute(
            "T.P", model_name=MODEL, variables={"who": "x"}, idempotency_key="t-1"
        )
        assert (again.id, again.replayed) == (first.id, True)
        sub = await aclient.execute(
            "T.P", model_name=MODEL, variables={"who": "y"}, mode="async", idempotency_key="t-2"
        )
        replay = await aclient.execute(
            "T.P", model_name=MODEL, variables={"who": "y"}, mode="async", idempotency_key="t-2"
        )
        assert (replay.execution_id, replay.replayed) == (sub.execution_id, True)
        await aclient.wait(sub)


class TestHistoryAndAnalytics:
    async def test_history_counts_executions_per_version(self, aclient: AsyncPromptLedger) -> None:
        await aclient.register_prompts({"H.P": "one"})
        await aclient.execute("H.P", model_name=MODEL)
        await aclient.register_prompts({"H.P": "two"})
        await aclient.execute("H.P", model_name=MODEL)
        await aclient.execute("H.P", model_name=MODEL)
        history = await aclient.history("H.P")
        assert (history.name, history.mode) == ("H.P", "tracking")
        assert [(v.version_number, v.execution_count) for v in history.versions] == [(2, 2), (1, 1)]
        assert all(v.template_hash == v.checksum for v in history.versions)
        assert history.versions[0].last_executed_at is not None
        assert (await aclient.history("H.P", mode="tracking")).versions == history.versions
        with pytest.raises(ModeMismatchError):
            await aclient.history("H.P", mode="full")
        with pytest.raises(NotFoundError):
            await aclient.history("nope")

    async def test_analytics_by_mode_and_prompt(self, aclient: AsyncPromptLedger) -> None:
        empty = await aclient.analytics()
        assert (empty.mode, empty.total_executions, empty.prompts) == ("all", 0, [])
        assert empty.by_mode.tracking.avg_latency_ms is None
        await aclient.save_prompt("f", "full")
        await aclient.register_prompts({"T.P": "tracked", "T.Q": "idle"})
        start = datetime.now(UTC) - timedelta(seconds=1)
        await aclient.run("f", model_name=MODEL)
        for _ in range(2):
            await aclient.execute("T.P", model_name=MODEL)
        report = await aclient.analytics()
        assert report.total_executions == 3
        assert (report.prompts_by_mode.full, report.prompts_by_mode.tracking) == (1, 2)
        assert report.by_mode.tracking.executions == 2
        assert report.by_mode.tracking.succeeded == 2
        assert report.by_mode.full.executions == 1
        assert [(p.name, p.mode, p.executions) for p in report.prompts] == [
            ("T.P", "tracking", 2),
            ("f", "full", 1),
        ]
        assert report.by_mode.tracking.p95_latency_ms is not None
        tracking = await aclient.analytics(mode="tracking", since=start)
        assert (tracking.mode, tracking.total_executions) == ("tracking", 2)
        later = await aclient.analytics(since=datetime.now(UTC) + timedelta(hours=1))
        assert later.total_executions == 0
        with pytest.raises(ValueError, match="timezone-aware"):
            await aclient.analytics(until=datetime(2030, 1, 1))


class TestConvert:
    async def test_full_to_tracking_and_back(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("Onboarding.WELCOME", "Welcome, {{ name }}!")
        tracked = await aclient.convert("Onboarding.WELCOME", to="tracking")
        assert tracked.mode == "tracking"
        assert tracked.active_version is not None
        assert tracked.active_version.version_number == 1
        with pytest.raises(ModeMismatchError):
            await aclient.save_prompt("Onboarding.WELCOME", "edited in the API")

        class Onboarding:
            WELCOME = "Welcome, {{ name }}!"

        assert summary(await aclient.register_code(Onboarding)) == [
            ("Onboarding.WELCOME", "unchanged", 1, 1)
        ]
        executed = await aclient.execute(
            "Onboarding.WELCOME", model_name=MODEL, variables={"name": "A"}
        )
        assert executed.prompt.mode == "tracking"

        full = await aclient.convert("Onboarding.WELCOME", to="full")
        assert full.mode == "full"
        saved = await aclient.save_prompt("Onboarding.WELCOME", "Welcome aboard, {{ name }}!")
        assert saved.version.version_number == 2
        with pytest.raises(ModeMismatchError):
            await aclient.register_code(Onboarding)
        types_ = [e.type for e in await aclient.list_events("Onboarding.WELCOME")]
        assert types_.count("mode_converted") == 2
        history = await aclient.history("Onboarding.WELCOME", mode="full")
        assert [v.execution_count for v in history.versions] == [0, 1]  # executions kept
        with pytest.raises(NotFoundError):
            await aclient.convert("nope", to="full")
        with pytest.raises(ValidationError):
            await aclient.convert("Onboarding.WELCOME", to="sideways")  # type: ignore[arg-type]
