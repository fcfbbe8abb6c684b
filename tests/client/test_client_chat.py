"""Chat prompts and model config (SPEC §9.1) through both clients: save, register from code,
run without a model name, and the new fields on the returned versions and executions."""

from __future__ import annotations

import hashlib
import types
from typing import Any

import pytest
import rfc8785

from prompt_ledger.client import (
    AsyncPromptLedger,
    ChatPrompt,
    CodePrompt,
    PromptLedger,
    RenderError,
    TextPrompt,
    ValidationError,
    collect_prompts,
)
from prompt_ledger.testing.stub_provider import stub_stats

MESSAGES: list[dict[str, Any]] = [
    {"role": "system", "content": "You are {{ persona }}."},
    {"type": "placeholder", "name": "history"},
    {"role": "user", "content": "{{ question }}"},
]
CONFIG = {
    "model_name": "gpt-4o-mini",
    "params": {"temperature": 0.2},
    "response_format": {"type": "json_object"},
}
SCHEMA = {"type": "object", "required": ["question"]}
VARIABLES = {
    "persona": "a pirate",
    "question": "Where is the treasure?",
    "history": [{"role": "user", "content": "Ahoy"}, {"role": "assistant", "content": "Arr"}],
}
SENT = [
    {"role": "system", "content": "You are a pirate."},
    {"role": "user", "content": "Ahoy"},
    {"role": "assistant", "content": "Arr"},
    {"role": "user", "content": "Where is the treasure?"},
]


class Bot:
    SUPPORT = ChatPrompt(MESSAGES, config=CONFIG, variables_schema=SCHEMA)
    SUMMARY = TextPrompt("Summarise: {{ text }}", config={"model_name": "gpt-4o-mini"})
    AS_DICT = {"messages": [{"role": "user", "content": "Hi {{ name }}"}], "config": CONFIG}
    PLAIN = "Hello {{ name }}"
    LIMITS = {"max": 3}  # an UPPER_CASE dict that is not a prompt: skipped
    RETRIES = 3


class TestRegistration:
    def test_collects_chat_text_and_dict_prompts(self) -> None:
        found = {p.name: p for p in collect_prompts(Bot)}
        assert set(found) == {"Bot.SUPPORT", "Bot.SUMMARY", "Bot.AS_DICT", "Bot.PLAIN"}
        support = found["Bot.SUPPORT"].to_json()
        assert support == {
            "name": "Bot.SUPPORT",
            "type": "chat",
            "messages": MESSAGES,
            "config": CONFIG,
            "variables_schema": SCHEMA,
        }
        assert "template_hash" not in support  # the server addresses it (RFC 8785)
        assert found["Bot.AS_DICT"].to_json()["type"] == "chat"
        assert found["Bot.SUMMARY"].to_json() == {
            "name": "Bot.SUMMARY",
            "type": "text",
            "template_source": "Summarise: {{ text }}",
            "config": {"model_name": "gpt-4o-mini"},
        }
        plain = found["Bot.PLAIN"].to_json()
        assert plain["template_hash"] == hashlib.sha256(b"Hello {{ name }}").hexdigest()

    def test_a_module_with_a_chat_prompt(self) -> None:
        module = types.ModuleType("myapp.prompts")
        module.CHAT = ChatPrompt([{"role": "user", "content": "x"}])  # type: ignore[attr-defined]
        assert [p.name for p in collect_prompts(module)] == ["prompts.CHAT"]


class TestSync:
    def test_save_run_and_register(self, sclient: PromptLedger, stub_url: str) -> None:
        saved = sclient.save_prompt(
            "support", messages=MESSAGES, config=CONFIG, variables_schema=SCHEMA
        )
        assert saved.created
        version = saved.version
        assert version.type == "chat"
        assert version.template_source is None
        assert version.messages == MESSAGES
        assert version.config == CONFIG
        assert version.variables_schema == SCHEMA
        expected = {
            "type": "chat",
            "messages": MESSAGES,
            "config": CONFIG,
            "variables_schema": SCHEMA,
        }
        assert version.checksum == hashlib.sha256(rfc8785.dumps(expected)).hexdigest()
        # the same content as a ChatPrompt is the same version
        again = sclient.save_prompt("support", Bot.SUPPORT)
        assert not again.created and again.version.checksum == version.checksum

        execution = sclient.run("support", variables=VARIABLES)  # the config's model
        assert execution.status == "succeeded", execution.error
        assert execution.rendered_messages == SENT
        assert execution.model.name == "gpt-4o-mini"
        assert execution.params == {"temperature": 0.2}
        assert stub_stats(stub_url)["last_body"]["response_format"] == {"type": "json_object"}
        assert sclient.get_execution(execution).rendered_messages == SENT

        listed = sclient.list_prompts().items[0]
        assert listed.active_version is not None and listed.active_version.type == "chat"

        results = {r.name: r for r in sclient.register_code(Bot)}
        assert results["Bot.SUPPORT"].checksum == version.checksum
        e = sclient.execute("Bot.SUPPORT", variables=VARIABLES)
        assert e.rendered_messages == SENT
        done = sclient.wait(sclient.execute("Bot.AS_DICT", variables={"name": "Ada"}, mode="async"))
        assert done.status == "succeeded"
        assert done.rendered_messages == [{"role": "user", "content": "Hi Ada"}]
        text = sclient.execute("Bot.SUMMARY", variables={"text": "long"})
        assert text.rendered_messages is None and text.rendered_prompt == "Summarise: long"

    def test_errors(self, sclient: PromptLedger) -> None:
        sclient.save_prompt("support", Bot.SUPPORT)
        with pytest.raises(ValidationError) as caught:
            sclient.run("support", variables={"persona": "x", "history": []})
        assert caught.value.details["path"] == "$.question"
        with pytest.raises(RenderError):
            sclient.run("support", variables={"persona": "x", "question": "q"})
        sclient.save_prompt("plain", "Hi")
        with pytest.raises(ValidationError):
            sclient.run("plain")  # no model anywhere
        with pytest.raises(ValidationError):
            sclient.save_prompt("bad", "x", variables_schema={"type": "nope"})
        with pytest.raises(ValueError):
            sclient.save_prompt("bad")  # neither text nor messages
        with pytest.raises(ValueError):
            sclient.save_prompt("bad", "x", messages=MESSAGES)
        with pytest.raises(ValueError):
            sclient.save_prompt("bad", Bot.SUPPORT, config=CONFIG)


class TestAsync:
    async def test_save_run_submit_and_register(
        self, aclient: AsyncPromptLedger, stub_url: str
    ) -> None:
        saved = await aclient.save_prompt("support", Bot.SUPPORT)
        assert saved.version.messages == MESSAGES
        assert saved.version.config == CONFIG
        assert (await aclient.get_prompt("support")).active_version == saved.version
        assert [v.type for v in await aclient.list_versions("support")] == ["chat"]

        execution = await aclient.run("support", variables=VARIABLES, params={"temperature": 1})
        assert execution.rendered_messages == SENT
        assert execution.params == {"temperature": 1}
        submission = await aclient.submit("support", variables=VARIABLES)
        done = await aclient.wait(submission, timeout=10)
        assert done.status == "succeeded"
        assert done.rendered_messages == SENT
        assert stub_stats(stub_url)["last_body"]["messages"] == SENT

        await aclient.register_prompts(
            [CodePrompt("code.chat", ChatPrompt([{"role": "user", "content": "hey"}]))]
        )
        e = await aclient.execute("code.chat", model_name="gpt-4o")
        assert e.rendered_messages == [{"role": "user", "content": "hey"}]
        assert e.model.name == "gpt-4o"
        results = await aclient.register_prompts({"code.text": TextPrompt("t", config=CONFIG)})
        assert results[0].change == "created"
