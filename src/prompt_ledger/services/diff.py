"""The diff of two versions of a prompt (SPEC §9.4), with the standard library's difflib."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db.tables import PromptVersion, VersionType
from prompt_ledger.services import prompts


@dataclass(frozen=True, slots=True)
class VersionDiff:
    from_version: int
    to_version: int
    unified: str
    template_changed: bool | None  # None unless both versions are text versions
    messages_changed: bool | None  # None unless both versions are chat versions
    config_changed: bool
    variables_schema_changed: bool
    variables_added: tuple[str, ...]
    variables_removed: tuple[str, ...]


async def diff_versions(
    session: AsyncSession, name: str, from_version: int, to_version: int
) -> VersionDiff:
    """What changed from version ``from_version`` to ``to_version`` of prompt ``name``.

    Raises:
        NotFound: no such prompt or version.
    """
    prompt = await prompts.get_prompt(session, name)
    old = await prompts.get_version(session, prompt, from_version)
    new = await prompts.get_version(session, prompt, to_version)
    return compare(name, old, new)


def compare(name: str, old: PromptVersion, new: PromptVersion) -> VersionDiff:
    """The unified diff of the template (text) or of the messages (chat, one block per
    message), and which parts differ. The variables are the names each version uses, as the
    rendering analysis recorded them when it was saved. Between a text and a chat version
    both ``template`` and ``messages`` count as changed."""
    unified = unified_diff(
        _content_text(old),
        _content_text(new),
        from_name=f"{name} v{old.version_number}",
        to_name=f"{name} v{new.version_number}",
    )
    both_text = old.type == new.type == VersionType.TEXT
    both_chat = old.type == new.type == VersionType.CHAT
    old_vars, new_vars = set(old.variables), set(new.variables)
    return VersionDiff(
        from_version=old.version_number,
        to_version=new.version_number,
        unified=unified,
        template_changed=None if both_chat else old.template_source != new.template_source,
        messages_changed=None if both_text else old.messages != new.messages,
        config_changed=(old.config or None) != (new.config or None),
        variables_schema_changed=old.variables_schema != new.variables_schema,
        variables_added=tuple(sorted(new_vars - old_vars)),
        variables_removed=tuple(sorted(old_vars - new_vars)),
    )


def _content_text(version: PromptVersion) -> str:
    """What the unified diff compares: a text version's template; a chat version's messages,
    each as a ``[role]`` line (``[placeholder: name]``) followed by its content."""
    if version.messages is None:
        return version.template_source or ""
    blocks = []
    for message in version.messages:
        if message.get("type") == "placeholder":
            blocks.append(f"[placeholder: {message['name']}]\n")
        else:
            blocks.append(f"[{message['role']}]\n{message['content']}\n")
    return "".join(blocks)


def unified_diff(old: str, new: str, *, from_name: str, to_name: str) -> str:
    """A unified diff (3 lines of context) as ``diff -u`` / ``git diff`` write it, marking
    a last line without a newline (so a change of only the final newline still shows)."""
    lines = difflib.unified_diff(
        _lines(old),
        _lines(new),
        fromfile=from_name,
        tofile=to_name,
    )
    return "".join(_mark_missing_newlines(lines))


def _lines(text: str) -> list[str]:
    """Lines split at ``\n`` only (``str.splitlines`` also splits at ``\r``, form feeds,
    U+2028…, which are content in a template), each keeping its newline."""
    parts = text.split("\n")
    lines = [part + "\n" for part in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def _mark_missing_newlines(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.endswith("\n"):
            yield line
        else:
            yield line + "\n\\ No newline at end of file\n"
