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
import threading
from collections.abc import Generator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final, cast

from jinja2 import Template

from prompt_ledger.errors import PromptLedgerError, PromptTooLarge, ValidationFailed
from prompt_ledger.services.rendering import watchdog
from prompt_ledger.services.rendering.budget import _Abort, _Render
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
