"""``services.prompts.checksum_of``: the one content-addressing rule (SPEC §4, §9.1)."""

from __future__ import annotations

import hashlib

import pytest
import rfc8785

from prompt_ledger.db.tables import VersionType
from prompt_ledger.errors import ValidationFailed
from prompt_ledger.services.prompts import VersionContent, checksum_of

MESSAGES = [{"role": "user", "content": "Hi {{ n }}"}, {"type": "placeholder", "name": "h"}]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_plain_text_is_the_sha256_of_its_bytes() -> None:
    assert checksum_of("Hi ") == sha(b"Hi ")
    assert checksum_of(VersionContent(template_source="Hi ")) == sha(b"Hi ")
    assert checksum_of(VersionContent(template_source="Hi", config={})) == sha(b"Hi")


def test_anything_else_is_the_sha256_of_canonical_json() -> None:
    config = {"model_name": "m", "params": {"temperature": 0.5}}
    text = VersionContent(template_source="Hi", config=config)
    assert checksum_of(text) == sha(
        rfc8785.dumps({"type": "text", "template_source": "Hi", "config": config})
    )
    chat = VersionContent(type=VersionType.CHAT, messages=MESSAGES)
    assert checksum_of(chat) == sha(rfc8785.dumps({"type": "chat", "messages": MESSAGES}))
    schema = VersionContent(type=VersionType.CHAT, messages=MESSAGES, variables_schema={})
    assert checksum_of(schema) == sha(
        rfc8785.dumps({"type": "chat", "messages": MESSAGES, "variables_schema": {}})
    )
    assert len({checksum_of(c) for c in (text, chat, schema)}) == 3


def test_member_order_does_not_matter() -> None:
    a = VersionContent(template_source="x", config={"model_name": "m", "provider": "openai"})
    b = VersionContent(template_source="x", config={"provider": "openai", "model_name": "m"})
    assert checksum_of(a) == checksum_of(b)


def test_a_value_json_cannot_canonicalise_is_a_validation_error() -> None:
    with pytest.raises(ValidationFailed):
        checksum_of(VersionContent(template_source="x", variables_schema={"const": 2**60}))
