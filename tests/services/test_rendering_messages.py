"""``render_messages``: a chat version's messages under §5's limits, shared by all of them."""

from __future__ import annotations

import time

import pytest

from prompt_ledger.errors import PromptTooLarge, RenderError
from prompt_ledger.services.rendering import render_messages

LOOP = "{% for i in range(2000) %}{% for j in range(300) %}{% endfor %}{% endfor %}"


def test_renders_each_content_and_fills_the_placeholder() -> None:
    messages = [
        {"role": "system", "content": "Be {{ tone }}."},
        {"type": "placeholder", "name": "chat"},
        {"role": "user", "content": "{{ q }}"},
    ]
    history = [{"role": "assistant", "content": "{{ not rendered }}"}]
    out = render_messages(messages, {"tone": "kind", "q": "why?", "chat": history}, timeout_s=2)
    assert out == [
        {"role": "system", "content": "Be kind."},
        {"role": "assistant", "content": "{{ not rendered }}"},
        {"role": "user", "content": "why?"},
    ]


def test_one_deadline_covers_all_the_messages() -> None:
    started = time.monotonic()
    alone = render_messages([{"role": "user", "content": LOOP + "ok"}], {}, timeout_s=1)
    one = time.monotonic() - started
    assert alone == [{"role": "user", "content": "ok"}]
    count = max(3, int(1.5 / max(one, 0.01)) + 1)  # together well over the deadline
    messages = [{"role": "user", "content": LOOP + f"m{i}"} for i in range(count)]
    with pytest.raises(RenderError) as caught:
        render_messages(messages, {}, timeout_s=1)
    assert "longer than" in caught.value.message


def test_one_size_budget_covers_all_the_messages() -> None:
    messages = [{"role": "user", "content": "{{ a }}"}, {"type": "placeholder", "name": "h"}]
    variables = {"a": "x" * 60, "h": [{"role": "user", "content": "y" * 50}]}
    assert len(render_messages(messages, variables, timeout_s=1, max_bytes=110)) == 2
    with pytest.raises(PromptTooLarge) as caught:
        render_messages(messages, variables, timeout_s=1, max_bytes=100)
    assert caught.value.details["limit"] == 100
    with pytest.raises(PromptTooLarge):
        render_messages(messages, {**variables, "a": "x" * 101}, timeout_s=1, max_bytes=100)
