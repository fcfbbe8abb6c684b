"""The blocking client: every method against the in-process app (both backends), and the
guarantee that the two clients offer the same API."""

from __future__ import annotations

import inspect
import types
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from tests.client.conftest import MODEL

from prompt_ledger.client import (
    AsyncPromptLedger,
    Execution,
    ModeMismatchError,
    NotCancelableError,
    NotFoundError,
    PromptLedger,
    RenderError,
    Submission,
    WaitTimeoutError,
)


def public_methods(cls: type) -> dict[str, inspect.Signature]:
    return {
        name: inspect.signature(member)
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_both_clients_offer_the_same_methods_and_arguments() -> None:
    sync = public_methods(PromptLedger)
    aio = public_methods(AsyncPromptLedger)
    assert set(sync) - {"close"} == set(aio) - {"aclose"}
    for name, signature in sync.items():
        if name == "close":
            continue
        other = aio[name]
        assert list(signature.parameters) == list(other.parameters), name
        for param, spec in signature.parameters.items():
            twin = other.parameters[param]
            assert (spec.kind, spec.default) == (twin.kind, twin.default), (name, param)
            if name != "__init__":
                assert spec.annotation == twin.annotation, (name, param)
        returns = str(signature.return_annotation).replace("Iterator[", "AsyncIterator[")
        assert returns == str(other.return_annotation), name
        # iter_* and stream_run return async iterators; everything else is a coroutine
        is_iter = returns.startswith("AsyncIterator[")
        method = getattr(AsyncPromptLedger, name)
        assert inspect.iscoroutinefunction(method) is not is_iter, name
        doc = inspect.getdoc(getattr(PromptLedger, name)) or ""
        assert "Example::" in doc, f"PromptLedger.{name} has no example"


def test_every_method_against_the_service(sclient: PromptLedger) -> None:
    client = sclient
    assert client.health().status == "healthy"
    assert client.ready().status == "ready"

    # full mode
    saved = client.save_prompt("welcome", "Hello {{ name }}!", description="greeting")
    assert (saved.created, saved.version.version_number) == (True, 1)
    client.save_prompt("welcome", "Hi {{ name }}!")
    assert client.describe_prompt("welcome").active_version is not None
    assert [v.version_number for v in client.list_versions("welcome")] == [2, 1]
    assert client.activate_version("welcome", 1).active_version.version_number == 1  # type: ignore[union-attr]
    assert [e.type for e in client.list_events("welcome")][-1] == "activated"
    for i in range(4):
        client.save_prompt(f"z{i}", "x")
    assert [p.name for p in client.iter_prompts(page_size=2)] == [
        "welcome",
        "z0",
        "z1",
        "z2",
        "z3",
    ]
    assert client.list_prompts(mode="full", limit=2).next_cursor is not None

    # executions
    run = client.run("welcome", variables={"name": "Ada"}, model_name=MODEL, idempotency_key="r1")
    assert (run.status, run.response_text) == ("succeeded", "echo: Hello Ada!")
    assert client.run(
        "welcome", variables={"name": "Ada"}, model_name=MODEL, idempotency_key="r1"
    ).replayed
    with pytest.raises(RenderError):
        client.run("welcome", model_name=MODEL)
    sub = client.submit("welcome", variables={"name": "Bob"}, model_name=MODEL)
    done = client.wait(sub, timeout=10, poll_interval=0.02)
    assert (done.status, done.execution_mode) == ("succeeded", "async")
    assert client.get_execution(sub.execution_id).id == done.id
    with pytest.raises(NotCancelableError):
        client.cancel_execution(done)
    with pytest.raises(NotFoundError):
        client.get_execution(uuid.uuid4())
    since = datetime.now(UTC) - timedelta(minutes=5)
    assert len(client.list_executions(prompt_name="welcome", since=since).items) == 2
    assert [e.id for e in client.iter_executions(page_size=1)] == [done.id, run.id]

    slow = client.submit("welcome", variables={"name": "[[stub delay=0.5]]"}, model_name=MODEL)
    with pytest.raises(WaitTimeoutError):
        client.wait(slow, timeout=0.1)
    assert client.wait(slow, timeout=10).status == "succeeded"

    # tracking mode
    class Prompts:
        GREET = "Hey {{ name }}"

    assert [r.change for r in client.register_code(Prompts)] == ["created"]
    Prompts.GREET = "Hey there {{ name }}"
    assert [r.change for r in client.register_code(Prompts)] == ["new_version"]
    module = types.ModuleType("app.texts")
    module.NOTE = "note"  # type: ignore[attr-defined]
    assert client.register_code(module)[0].name == "texts.NOTE"
    assert client.register_prompts({"Extra.ONE": "1"})[0].change == "created"
    assert set(client.registered) == {"Prompts.GREET", "texts.NOTE", "Extra.ONE"}
    tracked = client.execute("Prompts.GREET", variables={"name": "Cy"}, model_name=MODEL)
    assert isinstance(tracked, Execution)
    assert (tracked.version.number, tracked.prompt.mode) == (2, "tracking")
    queued = client.execute(
        "Prompts.GREET", variables={"name": "Di"}, model_name=MODEL, mode="async"
    )
    assert isinstance(queued, Submission)
    assert client.wait(queued).status == "succeeded"
    assert client.history("Prompts.GREET").versions[0].execution_count == 2
    with pytest.raises(ModeMismatchError):
        client.execute("welcome", model_name=MODEL)

    # conversion and analytics
    assert client.convert("welcome", to="tracking").mode == "tracking"
    with pytest.raises(ModeMismatchError):
        client.save_prompt("welcome", "new")
    assert client.convert("welcome", to="full").mode == "full"
    report = client.analytics()
    assert report.total_executions == 5
    assert report.by_mode.tracking.executions == 2
    assert client.analytics(mode="full").mode == "full"
