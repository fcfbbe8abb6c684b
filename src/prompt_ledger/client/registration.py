"""Code-first prompts: find the prompt texts a class or module defines.

The convention (SPEC §8): every attribute whose name is UPPER_CASE and whose value is a ``str``
is a prompt. Its registered name is ``<prefix>.<ATTRIBUTE>``, where the prefix is

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
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

_UPPER_CASE = re.compile(r"[A-Z][A-Z0-9_]*")


def template_hash(text: str) -> str:
    """sha256 hex of the text's UTF-8 bytes: the server's checksum of that text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class CodePrompt:
    """One prompt whose text lives in code, as sent to ``POST /v1/prompts/register-code``."""

    name: str
    template_source: str
    description: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "template_source": self.template_source,
            "template_hash": template_hash(self.template_source),
        }
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
    """Every UPPER_CASE ``str`` attribute of a class (inherited ones too) or module, by name.

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
            template_source=value,
            metadata=metadata or {},
        )
        for attr in sorted(dir(source))
        if _UPPER_CASE.fullmatch(attr) and isinstance(value := getattr(source, attr), str)
    ]
    if not found:
        raise ValueError(f"{source!r} has no UPPER_CASE str attribute to register")
    return found
