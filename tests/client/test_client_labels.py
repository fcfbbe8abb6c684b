"""Labels, splits and the diff through both clients (SPEC §9.2, §9.4)."""

from __future__ import annotations

import pytest
from tests.api.test_labels import expected_bucket
from tests.client.conftest import MODEL

from prompt_ledger.client import (
    AsyncPromptLedger,
    Diff,
    Label,
    NotFoundError,
    PromptLedger,
    SplitEntry,
    ValidationError,
)


async def three(client: AsyncPromptLedger, name: str = "p") -> None:
    for n in (1, 2, 3):
        await client.save_prompt(name, f"v{n} {{{{ x }}}}")


class TestAsyncClient:
    async def test_set_list_delete(self, aclient: AsyncPromptLedger) -> None:
        await three(aclient)
        moved = await aclient.set_label("p", "production", version=1)
        assert isinstance(moved, Label)
        assert (moved.label, moved.version_number, moved.split) == ("production", 1, None)
        ab = await aclient.set_label("p", "ab", split=[(1, 90), {"version": 2, "weight": 10}])
        assert ab.split == [SplitEntry(version=1, weight=90), SplitEntry(version=2, weight=10)]
        listed = await aclient.list_labels("p")
        assert [(x.label, x.version_number) for x in listed] == [
            ("active", 3),
            ("ab", None),
            ("production", 1),
        ]
        assert await aclient.delete_label("p", "ab") is None
        assert [x.label for x in await aclient.list_labels("p")] == ["active", "production"]
        events = [e for e in await aclient.list_events("p") if e.type == "label_moved"]
        assert [(e.label, e.version_number) for e in events] == [
            ("production", 1),
            ("ab", None),
            ("ab", None),
        ]
        assert events[1].split == ab.split and events[1].previous is None
        assert events[2].previous is not None and events[2].previous.split == ab.split

    async def test_errors_are_typed(self, aclient: AsyncPromptLedger) -> None:
        await three(aclient)
        with pytest.raises(ValidationError):
            await aclient.set_label("p", "ab", split=[(1, 50), (2, 49)])
        with pytest.raises(NotFoundError):
            await aclient.set_label("p", "production", version=9)
        with pytest.raises(NotFoundError):
            await aclient.delete_label("p", "nope")
        with pytest.raises(ValidationError):
            await aclient.delete_label("p", "active")
        with pytest.raises(ValueError, match="exactly one"):
            await aclient.set_label("p", "x")
        with pytest.raises(NotFoundError):
            await aclient.diff("p", 1, 9)

    async def test_run_submit_execute_with_label_and_subject(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await three(aclient)
        await aclient.set_label("p", "ab", split=[(1, 50), (2, 50)])
        subject = "user-7"
        want = 1 if expected_bucket("p", "ab", subject) < 50 else 2
        e = await aclient.run(
            "p", model_name=MODEL, variables={"x": "X"}, label="ab", subject=subject
        )
        assert (e.version.number, e.label, e.subject) == (want, "ab", subject)
        sub = await aclient.submit(
            "p", model_name=MODEL, variables={"x": "X"}, label="ab", subject=subject
        )
        done = await aclient.wait(sub, timeout=10)
        assert (done.version.number, done.label, done.subject) == (want, "ab", subject)
        with pytest.raises(ValidationError):
            await aclient.run("p", model_name=MODEL, version=1, label="ab")

        await aclient.register_prompts({"T.P": "one {{ x }}"})
        await aclient.register_prompts({"T.P": "two {{ x }}"})
        await aclient.set_label("T.P", "production", version=1)
        # registered v2 here, yet the label decides (no pinning)
        e = await aclient.execute(
            "T.P", model_name=MODEL, variables={"x": "X"}, label="production", subject="s"
        )
        assert (e.version.number, e.label, e.subject) == (1, "production", "s")

    async def test_diff(self, aclient: AsyncPromptLedger) -> None:
        await aclient.save_prompt("p", "Hello {{ a }}\n")
        await aclient.save_prompt("p", "Hello {{ b }}\n")
        d = await aclient.diff("p", 1, 2)
        assert isinstance(d, Diff)
        assert (d.from_, d.to) == (1, 2)
        assert "-Hello {{ a }}\n+Hello {{ b }}\n" in d.unified
        assert (d.changes.template, d.changes.variables_added, d.changes.variables_removed) == (
            True,
            ["b"],
            ["a"],
        )


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest) -> str:
    """These test the clients' calls and parsing; tests/api/test_labels.py covers the
    routes on every backend and driver, so SQLite is enough here."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


def test_sync_client(sclient: PromptLedger) -> None:
    for n in (1, 2):
        sclient.save_prompt("p", f"v{n} {{{{ x }}}}")
    assert sclient.set_label("p", "production", version=1).version_number == 1
    assert sclient.set_label("p", "ab", split=[(1, 30), (2, 70)]).split is not None
    assert [x.label for x in sclient.list_labels("p")] == ["active", "ab", "production"]
    sclient.delete_label("p", "ab")
    e = sclient.run("p", model_name=MODEL, variables={"x": "X"}, label="production")
    assert (e.version.number, e.label, e.subject) == (1, "production", None)
    s = sclient.submit("p", model_name=MODEL, variables={"x": "X"}, label="production")
    assert sclient.wait(s, timeout=10).version.number == 1
    assert sclient.diff("p", 1, 2).changes.template is True
    sclient.register_prompts({"T.P": "t {{ x }}"})
    e = sclient.execute("T.P", model_name=MODEL, variables={"x": "X"}, label="active")
    assert (e.version.number, e.label) == (1, "active")


class TestGetPromptOfLabels:
    """``get_prompt`` of a label (SPEC §9.3) through the cache: a split is cached whole and
    each call picks the variant a run with the same subject gets."""

    async def test_a_split_label_answers_the_subjects_variant(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await three(aclient)
        await aclient.set_label("p", "ab", split=[(1, 50), (2, 50)])
        for subject in ("u1", "u2", "u3", "u4"):
            want = 1 if expected_bucket("p", "ab", subject) < 50 else 2
            got = await aclient.get_prompt("p", label="ab", subject=subject)
            assert (got.version_number, got.label, got.split) == (want, "ab", None)
            assert got.render({"x": "!"}) == f"v{want} !"
            run = await aclient.run(
                "p", label="ab", subject=subject, variables={"x": "!"}, model_name=MODEL
            )
            assert run.version.number == want  # the server chose the same variant
        random_pick = await aclient.get_prompt("p", label="ab")
        assert random_pick.version_number in (1, 2)

    async def test_moving_a_label_through_the_client_drops_its_entry(
        self, aclient: AsyncPromptLedger
    ) -> None:
        await three(aclient)
        await aclient.set_label("p", "production", version=1)
        assert (await aclient.get_prompt("p", label="production")).version_number == 1
        await aclient.set_label("p", "production", version=2)  # fresh for 60 s, but dropped
        assert (await aclient.get_prompt("p", label="production")).version_number == 2
        await aclient.delete_label("p", "production")
        with pytest.raises(NotFoundError):
            await aclient.get_prompt("p", label="production")

    async def test_a_chat_version_renders_its_messages_locally(
        self, aclient: AsyncPromptLedger
    ) -> None:
        messages = [
            {"role": "system", "content": "Be {{ tone }}."},
            {"type": "placeholder", "name": "history"},
            {"role": "user", "content": "{{ q }}"},
        ]
        await aclient.save_prompt("c", messages=messages)
        prompt = await aclient.get_prompt("c")
        history = [{"role": "assistant", "content": "{{ not rendered }}"}]
        assert prompt.render({"tone": "brief", "q": "Hi", "history": history}) == [
            {"role": "system", "content": "Be brief."},
            {"role": "assistant", "content": "{{ not rendered }}"},
            {"role": "user", "content": "Hi"},
        ]
