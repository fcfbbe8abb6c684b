"""The per-render budget: a deadline, an allocation budget, and the caps on single values.

A template that builds one huge value (``'x' * 10**9``, ``9**(9**9)``) is refused by the caps
before the value exists; one that keeps building large values in a loop
(``range(100000)|map('center', 10**6)|list``) runs out of budget; one that only loops runs
into the deadline, checked in every sandbox hook and every 256 loop iterations. The checked
operations of the other modules charge the render running on this thread through the helpers
here; outside a render (Jinja folding constants at compile time) nothing is charged.

The leaf of the package: it imports none of the other modules.
"""

from __future__ import annotations

import threading
import time
from collections import abc
from typing import Final, NoReturn

from prompt_ledger.errors import PromptLedgerError, PromptTooLarge, RenderError

_MAX_VALUE_LEN: Final = 1 << 20
"""Largest string or list (characters / items) one template operation may build. Five times
the output cap leaves room for intermediate values that are cut down before output."""

_ALLOC_BUDGET: Final = 32 * _MAX_VALUE_LEN
"""Characters / items all checked operations of one render may build in total."""

_MAX_INT_BITS: Final = 1 << 16
"""Largest integer (~19,700 digits) arithmetic may produce; bigger ones cost real CPU."""

_TICK_EVERY: Final = 255  # loop iterations between deadline checks, minus one (a bit mask)

_monotonic = time.monotonic


class _Abort(BaseException):
    """Carries a domain error out of template code.

    A ``BaseException`` so that no ``except Exception`` inside Jinja or a filter can swallow it.
    """

    def __init__(self, error: PromptLedgerError) -> None:
        super().__init__(error.message)
        self.error = error


class _Render:
    """Deadline and allocation budget of the render running on this thread."""

    __slots__ = ("budget", "deadline", "timeout_s")

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self.deadline = _monotonic() + timeout_s
        self.budget = _ALLOC_BUDGET

    def tick(self) -> None:
        if _monotonic() > self.deadline:
            raise _Abort(_timeout_error(self.timeout_s))

    def charge(self, units: int) -> None:
        self.budget -= units
        if self.budget < 0:
            raise _Abort(
                PromptTooLarge(
                    f"the template builds more than {_ALLOC_BUDGET:,} characters of"
                    " intermediate text while rendering; simplify the template",
                    details={"limit": _ALLOC_BUDGET},
                )
            )


class _Local(threading.local):
    render: _Render | None = None


_tls = _Local()


def _timeout_error(timeout_s: float) -> RenderError:
    return RenderError(
        f"rendering took longer than {timeout_s:g} s; simplify the template's loops",
        details={"timeout_s": timeout_s},
    )


def _fail(error: PromptLedgerError) -> NoReturn:
    """Raise ``error`` from a hook: wrapped while rendering, plain during compile-time folding
    (where Jinja treats any ``Exception`` as "not a constant" and defers to run time)."""
    if _tls.render is None:
        raise error
    raise _Abort(error)


def _tick() -> None:
    render = _tls.render
    if render is not None:
        render.tick()


def _charge(units: int) -> None:
    render = _tls.render
    if render is not None:
        render.charge(units)


def _too_large(size: int) -> NoReturn:
    _fail(
        PromptTooLarge(
            f"the template builds a value of at least {size:,} characters or items;"
            f" the limit is {_MAX_VALUE_LEN:,}",
            details={"limit": _MAX_VALUE_LEN, "size": size},
        )
    )


def _number_too_large() -> NoReturn:
    _fail(
        RenderError(
            f"the template computes a number larger than {_MAX_INT_BITS:,} bits",
            details={"limit_bits": _MAX_INT_BITS},
        )
    )


def _check_growth(estimate: int, base: int = 0) -> None:
    """Refuse to build a value past the cap, unless it is no larger than its input."""
    if estimate > _MAX_VALUE_LEN and estimate > base:
        _too_large(estimate)


def _check_int(value: object) -> None:
    if type(value) is int and value.bit_length() > _MAX_INT_BITS:
        _number_too_large()


_SIZED_RESULTS: Final = (str, bytes, list, tuple, dict, set, frozenset)


def _account(result: object, source: object) -> None:
    """Check and charge a value an operation just built from ``source``."""
    if result is source:
        return
    if isinstance(result, _SIZED_RESULTS):
        size = len(result)
        if size > _MAX_VALUE_LEN:
            base = len(source) if isinstance(source, abc.Sized) else 0
            _check_growth(size, base)
        _charge(size)
    else:
        _check_int(result)
