"""``render`` and ``render_async``: a compiled template run under the budget and the watchdog.

The rendered text is streamed from the template's generator and counted in UTF-8 bytes;
rendering stops at the first chunk that passes ``max_bytes``, and a NUL in the output is
refused. ``render_async`` runs the same blocking ``render`` on a small dedicated thread pool,
so the event loop only waits on a future and never runs template code.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import threading
import time
from collections.abc import Generator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, cast

from jinja2 import Template

from prompt_ledger.errors import PromptLedgerError, PromptTooLarge, RenderError, ValidationFailed
from prompt_ledger.services.rendering import watchdog
from prompt_ledger.services.rendering.budget import _Abort, _Render, _timeout_error
from prompt_ledger.services.rendering.compiling import _CACHE, _check_source, _utf8_len
from prompt_ledger.services.rendering.failures import _domain_error

MAX_RENDERED_BYTES: Final = 204_800
"""Spec §5: a rendered prompt over this many UTF-8 bytes is ``prompt_too_large``."""

_RENDER_THREADS: Final = 8


def _stream(template: Template, variables: Mapping[str, Any], max_bytes: int) -> str:
    """Run the template's generator, stopping at the first chunk that passes ``max_bytes``."""
    context = template.new_context(dict(variables))
    chunks = cast("Generator[str, None, None]", template.root_render_func(context))
    parts: list[str] = []
    size = 0
    try:
        for chunk in chunks:
            size += len(chunk) if chunk.isascii() else _utf8_len(chunk, "rendered prompt")
            if size > max_bytes:
                raise _Abort(
                    PromptTooLarge(
                        f"the rendered prompt is over {max_bytes:,} bytes",
                        details={"limit": max_bytes, "size_at_least": size},
                    )
                )
            parts.append(chunk)
    finally:
        chunks.close()
    text = "".join(parts)
    if "\x00" in text:
        raise _Abort(
            ValidationFailed(
                "the rendered prompt contains a NUL character, which cannot be stored",
                details={"field": "rendered_prompt"},
            )
        )
    return text


def render(
    source: str,
    variables: Mapping[str, Any],
    *,
    timeout_s: float,
    max_bytes: int = MAX_RENDERED_BYTES,
) -> str:
    """Render ``source`` with ``variables`` (blocking; see the package docstring for limits).

    Raises ``InvalidTemplate``, ``RenderError`` (missing variable, sandbox violation, timeout,
    runtime error), ``PromptTooLarge`` or ``ValidationFailed`` (NUL, unpaired surrogate).
    Compiling an uncached template happens before the deadline starts.
    """
    _check_source(source)
    template = _CACHE.get(source).template
    state = _Render(timeout_s)
    error: PromptLedgerError | None = None
    try:
        # Through the module: a forked child replaces the watchdog.
        return watchdog._WATCHDOG.run(state, lambda: _stream(template, variables, max_bytes))
    except PromptLedgerError as exc:
        error = exc
    except BaseException as exc:  # everything a hostile template can raise
        if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
            raise
        error = _domain_error(exc, template)
    raise error


async def render_async(
    source: str,
    variables: Mapping[str, Any],
    *,
    timeout_s: float,
    max_bytes: int = MAX_RENDERED_BYTES,
) -> str:
    """``render`` on the render thread pool, so the event loop never runs template code."""
    call = functools.partial(render, source, variables, timeout_s=timeout_s, max_bytes=max_bytes)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


# SPEC §9.1: the roles a chat message may have, in templates and in placeholder fills.
CHAT_ROLES: Final = ("system", "developer", "user", "assistant")
PLACEHOLDER_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def render_messages(
    messages: Sequence[Mapping[str, Any]],
    variables: Mapping[str, Any],
    *,
    timeout_s: float,
    max_bytes: int = MAX_RENDERED_BYTES,
) -> list[dict[str, str]]:
    """Render a chat version's messages: each ``content`` is a template rendered as by
    ``render``; a ``{"type": "placeholder", "name": N}`` entry is replaced by the list of
    ``{role, content}`` messages in variable ``N``, as given (never rendered: it is data).

    One deadline (``timeout_s``) and one size budget (``max_bytes`` of content, UTF-8) cover
    all the messages together. Raises as ``render`` does, and ``RenderError`` for a missing
    or malformed placeholder variable or messages that render to nothing.
    """
    deadline = time.monotonic() + timeout_s
    out: list[dict[str, str]] = []
    used = 0
    for message in messages:
        if message.get("type") == "placeholder":
            filled = _placeholder(str(message["name"]), variables)
        else:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout_error(timeout_s)
            try:
                text = render(
                    str(message["content"]),
                    variables,
                    timeout_s=remaining,
                    max_bytes=max_bytes - used,
                )
            except PromptTooLarge:
                raise _too_large(max_bytes, max_bytes + 1) from None
            filled = [{"role": str(message["role"]), "content": text}]
        for item in filled:
            used += _utf8_len(item["content"], "rendered prompt")
        if used > max_bytes:
            raise _too_large(max_bytes, used)
        out.extend(filled)
    if not out:
        raise RenderError(
            "the messages render to an empty list (an empty placeholder and nothing else); "
            "a chat needs at least one message",
            details={"messages": 0},
        )
    return out


def _too_large(limit: int, size: int) -> PromptTooLarge:
    return PromptTooLarge(
        f"the rendered messages are over {limit:,} bytes",
        details={"limit": limit, "size_at_least": size},
    )


def _placeholder(name: str, variables: Mapping[str, Any]) -> list[dict[str, str]]:
    """Variable ``name`` as a list of ``{role, content}`` messages, or a ``RenderError``."""
    if name not in variables:
        raise RenderError(
            f"variable '{name}' is not defined; the placeholder needs it: a list of "
            "{role, content} messages",
            details={"variable": name},
        )
    value = variables[name]
    if not isinstance(value, list):
        raise _malformed(name, f"is a {type(value).__name__}, not a list")
    filled: list[dict[str, str]] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict) or set(item) != {"role", "content"}:
            raise _malformed(name, f"item {index} is not exactly {{role, content}}", index)
        role, content = item["role"], item["content"]
        if role not in CHAT_ROLES:
            raise _malformed(name, f"item {index} has role {role!r}", index)
        if not isinstance(content, str):
            raise _malformed(name, f"item {index} has content that is not text", index)
        filled.append({"role": role, "content": content})
    return filled


def _malformed(name: str, why: str, index: int | None = None) -> RenderError:
    details: dict[str, Any] = {"variable": name}
    if index is not None:
        details["index"] = index
    return RenderError(
        f"variable '{name}' fills a placeholder and must be a list of {{role, content}} "
        f"messages (role one of {', '.join(CHAT_ROLES)}); it {why}",
        details=details,
    )


async def render_messages_async(
    messages: Sequence[Mapping[str, Any]],
    variables: Mapping[str, Any],
    *,
    timeout_s: float,
    max_bytes: int = MAX_RENDERED_BYTES,
) -> list[dict[str, str]]:
    """``render_messages`` on the render thread pool (one hop for all the messages)."""
    call = functools.partial(
        render_messages, messages, variables, timeout_s=timeout_s, max_bytes=max_bytes
    )
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)


_executor_lock = threading.Lock()
_executor_instance: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _executor_instance
    executor = _executor_instance
    if executor is None:
        with _executor_lock:
            if _executor_instance is None:
                _executor_instance = ThreadPoolExecutor(
                    max_workers=_RENDER_THREADS, thread_name_prefix="prompt-render"
                )
            executor = _executor_instance
    return executor


def _after_fork_in_child() -> None:
    """Threads do not survive fork (Celery prefork): start a fresh pool on demand."""
    global _executor_instance, _executor_lock
    _executor_instance = None
    _executor_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
