"""Code-first prompts: find the prompts a class or module defines.

The convention (SPEC §8, §9.1): every attribute whose name is UPPER_CASE and whose value is a
prompt is registered. A prompt is

* a ``str``: a text template;
* a :class:`TextPrompt` (a template with a model ``config`` and/or a ``variables_schema``) or
  a :class:`ChatPrompt` (a list of chat messages, with the same optional extras);
* a ``dict`` shaped like the API's body: ``{"messages": [...], "config": {...}}`` (a chat) or
  ``{"template_source": "...", ...}`` (a text); other dicts are not prompts and are skipped.

Its registered name is ``<prefix>.<ATTRIBUTE>``, where the prefix is

* for a class: the class's ``__name__`` (``Prompts.WELCOME``), as the spec shows;
* for a module: the last component of the module's ``__name__`` (``myapp.prompts`` gives
  ``prompts.WELCOME``): short, and stable while the package around it is reorganised. Two
  modules with the same last name would collide: pass ``prefix=`` to tell them apart.

``prefix=""`` registers the bare attribute names.
"""

from __future__ import annotations

import hashlib
import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

_UPPER_CASE = re.compile(r"[A-Z][A-Z0-9_]*")


def template_hash(text: str) -> str:
    """sha256 hex of the text's UTF-8 bytes: the server's checksum of that text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class TextPrompt:
    """A text template with the model it was written for and/or a schema for its variables.

    Example::

        TextPrompt("Summarise: {{ text }}", config={"model_name": "gpt-4o-mini",
                   "params": {"temperature": 0.2}})
    """

    template_source: str
    config: Mapping[str, Any] | None = None
    variables_schema: Mapping[str, Any] | None = None

    def content_json(self) -> dict[str, Any]:
        """The version's content as the API's body has it."""
        return _with_extras(
            {"type": "text", "template_source": self.template_source},
            self.config,
            self.variables_schema,
        )


@dataclass(frozen=True, slots=True)
class ChatPrompt:
    """A chat prompt: messages ``{"role": ..., "content": "<Jinja2 template>"}`` (roles
    ``system``, ``developer``, ``user``, ``assistant``) and at most one
    ``{"type": "placeholder", "name": "history"}``, which a run fills with the list of
    ``{role, content}`` messages passed as variable ``history``.

    Example::

        ChatPrompt(
            [
                {"role": "system", "content": "You are {{ persona }}."},
                {"type": "placeholder", "name": "history"},
                {"role": "user", "content": "{{ question }}"},
            ],
            config={"model_name": "gpt-4o-mini", "response_format": {"type": "json_object"}},
        )
    """

    messages: Sequence[Mapping[str, Any]]
    config: Mapping[str, Any] | None = None
    variables_schema: Mapping[str, Any] | None = None

    def content_json(self) -> dict[str, Any]:
        """The version's content as the API's body has it."""
        return _with_extras(
            {"type": "chat", "messages": [dict(m) for m in self.messages]},
            self.config,
            self.variables_schema,
        )


PromptContent = str | TextPrompt | ChatPrompt


def _with_extras(
    body: dict[str, Any],
    config: Mapping[str, Any] | None,
    variables_schema: Mapping[str, Any] | None,
) -> dict[str, Any]:
    if config is not None:
        body["config"] = dict(config)
    if variables_schema is not None:
        body["variables_schema"] = dict(variables_schema)
    return body


def content_json(content: PromptContent) -> dict[str, Any]:
    """A prompt's content as the API's body has it (``{"template_source": ...}`` for a str)."""
    if isinstance(content, str):
        return {"template_source": content}
    return content.content_json()


def as_content(value: object) -> PromptContent | None:
    """``value`` as a prompt, or None when it is not one (see the module docstring)."""
    if isinstance(value, str | TextPrompt | ChatPrompt):
        return value
    if isinstance(value, Mapping):
        extras = {
            "config": value.get("config"),
            "variables_schema": value.get("variables_schema"),
        }
        if "messages" in value:
            return ChatPrompt(value["messages"], **extras)
        if "template_source" in value:
            return TextPrompt(value["template_source"], **extras)
    return None


@dataclass(frozen=True, slots=True)
class CodePrompt:
    """One prompt whose content lives in code, as sent to ``POST /v1/prompts/register-code``.

    A plain text (a ``str``) is sent with its ``template_hash`` (sha256); a prompt with
    messages, config or a schema is content-addressed by the server (RFC 8785 JSON).
    """

    name: str
    template_source: PromptContent
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"name": self.name, **content_json(self.template_source)}
        if isinstance(self.template_source, str):
            body["template_hash"] = template_hash(self.template_source)
        if self.description is not None:
            body["description"] = self.description
        if self.metadata:
            body["metadata"] = dict(self.metadata)
        return body


def default_prefix(source: type | ModuleType) -> str:
    """``ClassName`` for a class, the module name's last component for a module."""
    if isinstance(source, ModuleType):
        return source.__name__.rpartition(".")[2]
    return source.__name__


def collect_prompts(
    source: type | ModuleType,
    *,
    prefix: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> list[CodePrompt]:
    """Every UPPER_CASE prompt attribute of a class (inherited ones too) or module, by name.

    Raises:
        TypeError: ``source`` is neither a class nor a module.
        ValueError: it defines no such attribute.
    """
    if not (inspect.isclass(source) or isinstance(source, ModuleType)):
        raise TypeError(
            f"register_code takes a class or a module, not {type(source).__name__}; "
            "use register_prompts for other sources"
        )
    head = default_prefix(source) if prefix is None else prefix
    found = [
        CodePrompt(
            name=f"{head}.{attr}" if head else attr,
            template_source=content,
            metadata=metadata or {},
        )
        for attr in sorted(dir(source))
        if _UPPER_CASE.fullmatch(attr)
        and (content := as_content(getattr(source, attr))) is not None
    ]
    if not found:
        raise ValueError(f"{source!r} has no UPPER_CASE prompt attribute to register")
    return found
