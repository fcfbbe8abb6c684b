"""A watchdog thread that stops library code still running past a render's deadline.

The deadline is checked in sandbox hooks and loops, but Python-level library code runs between
hooks (``textwrap`` inside ``|wordwrap``, ``pformat``, Jinja's own filter loops). Once a render
is past its deadline plus a short grace, the watchdog raises an asynchronous exception into
the rendering thread (``PyThreadState_SetAsyncExc``). C-level work is never interruptible,
which is why the other modules keep every single C operation small.
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from typing import Any, Final

from prompt_ledger.services.rendering.budget import (
    _Abort,
    _monotonic,
    _Render,
    _timeout_error,
    _tls,
)

_WATCHDOG_GRACE_S: Final = 0.05
_WATCHDOG_REPEAT_S: Final = 0.1
_WATCHDOG_POLL_S: Final = 0.05


class _RenderTimeout(BaseException):
    """Raised asynchronously into a rendering thread by the watchdog."""


def _async_exc_api() -> tuple[Any, Any]:
    """``PyThreadState_SetAsyncExc`` typed once to raise (class) and once to clear (NULL).

    ``PYFUNCTYPE`` keeps the GIL held during the call, which the C API requires.
    """
    name = "PyThreadState_SetAsyncExc"
    try:
        api = ctypes.pythonapi
        raise_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.py_object)((name, api))
        clear_in = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p)((name, api))
    except (AttributeError, OSError):  # pragma: no cover - not CPython
        return None, None
    return raise_in, clear_in


_set_async_exc, _clear_async_exc = _async_exc_api()


class _Watch:
    __slots__ = ("injected", "kill_at", "thread_id")

    def __init__(self, thread_id: int, kill_at: float) -> None:
        self.thread_id = thread_id
        self.kill_at = kill_at
        self.injected = False


class _Watchdog:
    """Raises ``_RenderTimeout`` into threads whose render overran its deadline.

    Injection only happens under ``_cond`` for threads registered in ``_active``; a thread
    deregisters under the same lock and then clears any exception still pending, so the
    asynchronous exception can never land outside the render it was meant for.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._active: set[_Watch] = set()
        self._thread: threading.Thread | None = None
        self._idle = False

    def run(self, render: _Render, work: Callable[[], str]) -> str:
        watch = self._enter(render)
        try:
            try:
                return work()
            except _RenderTimeout:
                pass
        except _RenderTimeout:  # a second delivery while handling the first
            pass
        finally:
            self._leave(watch)
        raise _Abort(_timeout_error(render.timeout_s))

    def _enter(self, render: _Render) -> _Watch | None:
        _tls.render = render
        if _set_async_exc is None:
            return None
        watch = _Watch(threading.get_ident(), render.deadline + _WATCHDOG_GRACE_S)
        with self._cond:
            self._active.add(watch)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="prompt-render-watchdog", daemon=True
                )
                self._thread.start()
            elif self._idle:
                self._cond.notify()
        return watch

    def _leave(self, watch: _Watch | None) -> None:
        while True:
            try:
                if watch is not None:
                    with self._cond:
                        self._active.discard(watch)
                    if watch.injected:
                        _clear_async_exc(watch.thread_id, None)
                _tls.render = None
                return
            except _RenderTimeout:
                continue

    def _loop(self) -> None:
        with self._cond:
            while True:
                if not self._active:
                    self._idle = True
                    self._cond.wait()
                    self._idle = False
                    continue
                now = _monotonic()
                wake = now + _WATCHDOG_POLL_S
                for watch in self._active:
                    if now >= watch.kill_at:
                        _set_async_exc(watch.thread_id, _RenderTimeout)
                        watch.injected = True
                        watch.kill_at = now + _WATCHDOG_REPEAT_S
                    wake = min(wake, watch.kill_at)
                self._cond.wait(max(wake - now, 0.001))


_WATCHDOG: _Watchdog = _Watchdog()


def _after_fork_in_child() -> None:
    """Threads do not survive fork (Celery prefork): start a fresh watchdog on demand."""
    global _WATCHDOG
    _tls.render = None
    _WATCHDOG = _Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
