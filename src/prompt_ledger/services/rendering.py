"""Render user-supplied Jinja2 prompt templates with hard limits on time, memory and output.

Templates come from API callers, so they are hostile input. Jinja's
``ImmutableSandboxedEnvironment`` stops attribute-walking escapes
(``''.__class__.__mro__``, ``cycler.__init__.__globals__``, the ``|attr('format')`` CVE), but by
its own documentation it does nothing about resource use: ``{{ 'x' * 10**9 }}``,
``{{ 9**(9**9) }}``, ``|center(10**9)`` or two nested ``range(100000)`` loops still allocate
gigabytes or spin for hours. This module keeps rendering *in-process* (a compiled template is
cached per source text and a plain ``Hello {{ name }}`` costs ~10 µs, where a subprocess per
render would cost milliseconds) and closes every path to runaway work with four layers:

1. **Size checks before allocation.** ``* ** + %`` are intercepted (``call_binop``) and refused
   when the result would pass the value cap (strings and lists) or the bit cap (integers).
   Amplifying filters (``center indent join replace wordwrap format batch slice round sum tojson
   pprint``) and ``str`` methods (``center ljust zfill expandtabs join replace translate``) are
   replaced or pre-checked. A custom code generator routes ``~`` and every internal output buffer
   (macros, ``{% set %}`` blocks, ``caller()``) through size-checked helpers. Any conversion of a
   container to text is first *estimated* (walking the structure with an early exit), because
   ``[big] * n`` costs n pointers but its ``str()`` costs n copies.
2. **An allocation budget per render**, charged by every checked operation, so a loop that keeps
   building large values (``range(100000)|map('center', 10**6)|list``) stops as well.
3. **A deadline checked in the sandbox's own hooks** (calls, operators, filters, comparisons)
   and every 256 iterations of every ``{% for %}`` loop (the code generator wraps each loop
   iterable), so template loops and recursion stop within milliseconds of the timeout.
4. **A watchdog thread as a backstop** for Python-level library code that runs between hooks
   (``textwrap`` inside ``|wordwrap``, ``pformat``, Jinja's own filter loops): once a render is
   past its deadline plus a short grace it raises an asynchronous exception into the rendering
   thread (``PyThreadState_SetAsyncExc``). C-level work is never interruptible, which is why
   layer 1 keeps every single C operation small.

``render_async`` runs the same blocking ``render`` on a small dedicated thread pool, so the
event loop only waits on a future. The rendered text is streamed from the template's generator
and counted in UTF-8 bytes; rendering stops at the first chunk that passes ``max_bytes``.

Only plain JSON-like data (str, int, float, bool, None, list, dict) may be passed as variables:
everything in the context is reachable from the template.
"""

from __future__ import annotations

import asyncio
import codecs
import ctypes
import functools
import json
import os
import re
import reprlib
import textwrap
import threading
import time
import types
from collections import OrderedDict, abc
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pprint import pformat
from typing import Any, Final, NamedTuple, NoReturn, cast

from jinja2 import (
    StrictUndefined,
    Template,
    TemplateSyntaxError,
    UndefinedError,
    meta,
    nodes,
    pass_context,
    pass_environment,
    pass_eval_context,
)
from jinja2 import filters as jinja_filters
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import FilterArgumentError, SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, Undefined, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Namespace, _PassArg, missing
from markupsafe import EscapeFormatter, Markup

from prompt_ledger.errors import (
    InvalidTemplate,
    PromptLedgerError,
    PromptTooLarge,
    RenderError,
    ValidationFailed,
)

__all__ = [
    "MAX_RENDERED_BYTES",
    "MAX_TEMPLATE_BYTES",
    "render",
    "render_async",
    "template_variables",
]

MAX_RENDERED_BYTES: Final = 204_800
"""Spec §5: a rendered prompt over this many UTF-8 bytes is ``prompt_too_large``."""

MAX_TEMPLATE_BYTES: Final = 204_800
"""Template source cap. Compiling costs ~5 µs per byte and runs outside the render deadline, and
a template longer than the largest renderable prompt cannot be a useful prompt."""

_MAX_VALUE_LEN: Final = 1 << 20
"""Largest string or list (characters / items) one template operation may build. Five times
the output cap leaves room for intermediate values that are cut down before output."""

_ALLOC_BUDGET: Final = 32 * _MAX_VALUE_LEN
"""Characters / items all checked operations of one render may build in total."""

_MAX_INT_BITS: Final = 1 << 16
"""Largest integer (~19,700 digits) arithmetic may produce; bigger ones cost real CPU."""

_MAX_ROUND_DIGITS: Final = 4300
_MAX_DEPTH: Final = 200
_MAX_JSON_INDENT: Final = 64
_PPRINT_LIMIT: Final = 1 << 16
_TICK_EVERY: Final = 255  # loop iterations between deadline checks, minus one (a bit mask)
_WATCHDOG_GRACE_S: Final = 0.05
_WATCHDOG_REPEAT_S: Final = 0.1
_WATCHDOG_POLL_S: Final = 0.05
_MAX_TEMPLATE_TAGS: Final = 5000
"""``{{ }}`` and ``{% %}`` tags per template. Compile cost follows tags, not text: 11,000 tags
take ~1.4 s and ~135 MB to compile, 5,000 about half that; static text is nearly free."""
_RENDER_THREADS: Final = 8
_CACHE_ENTRIES: Final = 512
_CACHE_WEIGHT: Final = 32 << 20
"""Compiled templates kept, weighed as source bytes plus ~200 bytes of code per tag."""
_TEMPLATE_FILE: Final = "<template>"
_SAFE_CODECS: Final = frozenset(
    {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "ascii"}
    | {"latin-1", "iso8859-1"}
)
"""``str.encode`` / ``bytes.decode`` codecs a template may use; others (``punycode``) are
pure-Python and quadratic."""

_monotonic = time.monotonic


# --------------------------------------------------------------------------- render state


class _Abort(BaseException):
    """Carries a domain error out of template code.

    A ``BaseException`` so that no ``except Exception`` inside Jinja or a filter can swallow it.
    """

    def __init__(self, error: PromptLedgerError) -> None:
        super().__init__(error.message)
        self.error = error


class _RenderTimeout(BaseException):
    """Raised asynchronously into a rendering thread by the watchdog."""


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


# --------------------------------------------------------------------------- size estimates


def _int_len(value: int) -> int:
    return value.bit_length() * 30103 // 100000 + 2


def _quoted_len(text: str, remaining: int) -> int:
    """Upper bound on ``len(repr(text))`` without building a huge repr."""
    size = len(text)
    if size > remaining:
        return size + 2
    if text.isprintable():
        return size + 2 + text.count("\\") + text.count("'")
    if size <= 4096:
        return len(repr(text))
    total = 2 + text.count("'")
    for start in range(0, size, 65536):
        total += len(repr(text[start : start + 65536])) - 2
        if total > remaining:
            break
    return total


def _text_size(value: object, limit: int, *, quoted: bool = False) -> int:
    """Upper bound on ``len(str(value))`` (``repr`` when ``quoted``); exits once past ``limit``.

    Counts every reference, so ``[s] * 1000`` weighs what its text would weigh; work is bounded
    by ``limit`` because every visited node adds at least one unit.
    """
    if isinstance(value, str) and not quoted:
        return len(value)
    total = 0
    stack: list[tuple[object, int]] = [(value, 0)]
    top = not quoted
    while stack:
        item, depth = stack.pop()
        if depth > _MAX_DEPTH:
            return limit + 1
        if isinstance(item, str):
            total += len(item) if top else _quoted_len(item, limit - total)
        elif item is None or isinstance(item, (bool, float, complex)):
            total += 32
        elif isinstance(item, int):
            total += _int_len(item)
        elif isinstance(item, (bytes, bytearray)):
            total += 4 * len(item) + 3
        elif isinstance(item, range):
            total += _int_len(item.start) + _int_len(item.stop) + _int_len(item.step) + 10
        elif isinstance(item, Undefined):
            str(item)  # a strict undefined raises here instead of printing "Undefined"
            total += 9
        elif isinstance(item, Namespace):
            attrs: dict[str, Any] = object.__getattribute__(item, "_Namespace__attrs")
            total += 14
            stack.append((attrs, depth + 1))
        elif isinstance(item, abc.Mapping):
            total += 2 + 4 * len(item)
            if total <= limit:
                for key, val in item.items():
                    stack.append((key, depth + 1))
                    stack.append((val, depth + 1))
        elif isinstance(item, (list, tuple, abc.Set, abc.MappingView)):
            total += 16 + 2 * len(item)
            if total <= limit:
                elements: Iterable[object] = item  # type: ignore[assignment]
                stack.extend((element, depth + 1) for element in elements)
        else:
            total += 256  # objects whose repr does not show their contents
        top = False
        if total > limit:
            return total
    return total


_SHORT_TEXT: Final = frozenset({int, float, bool, type(None)})


def _to_text(value: object) -> str:
    """``str(value)``, refused when the text would pass the value cap."""
    if isinstance(value, str):
        return value
    if type(value) in _SHORT_TEXT or isinstance(value, Undefined):
        return str(value)  # bounded (ints by the bit cap); StrictUndefined raises here
    size = _text_size(value, _MAX_VALUE_LEN)
    if size > _MAX_VALUE_LEN:
        _too_large(size)
    text = str(value)
    _charge(len(text))
    return text


def _check_args(values: Iterable[object]) -> None:
    """Bound the text of call arguments: builtins put ``repr(arg)`` into error messages."""
    for value in values:
        if not isinstance(value, (str, int, float)) and value is not None:
            size = _text_size(value, _MAX_VALUE_LEN, quoted=True)
            if size > _MAX_VALUE_LEN:
                _too_large(size)


# --------------------------------------------------------------------------- string formatting

_PRINTF_SPEC: Final = re.compile(r"%(?:\(([^)]*)\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.?)")
_DIGIT_RUN: Final = re.compile(r"\d+")


def _spec_number(text: str | None, default: int) -> int:
    if not text:
        return default
    return int(text) if len(text) <= 9 else _MAX_VALUE_LEN + 1


def _percent(fmt: str, values: object) -> str:
    """``fmt % values`` after bounding the result from the conversion specifiers."""
    if not isinstance(fmt, str):
        _fail(RenderError("only text can be %-formatted"))
    positional = values if isinstance(values, tuple) else (values,)
    index = 0
    total = len(fmt)

    def take() -> object:
        nonlocal index
        value = positional[index] if index < len(positional) else None
        index += 1
        return value

    for match in _PRINTF_SPEC.finditer(fmt):
        key, width_text, precision_text, conversion = match.groups()
        if conversion == "%":
            continue
        width_value = take() if width_text == "*" else _spec_number(width_text, 0)
        precision_value: object = None
        if precision_text == "*":
            precision_value = take()
        elif precision_text is not None:
            precision_value = _spec_number(precision_text, 0)
        width = width_value if isinstance(width_value, int) else 0
        precision = precision_value if isinstance(precision_value, int) else None
        if width > _MAX_VALUE_LEN or (precision or 0) > _MAX_VALUE_LEN:
            _too_large(max(width, precision or 0))
        if key is not None:
            arg = values.get(key) if isinstance(values, abc.Mapping) else None
        else:
            arg = take()
        if conversion in ("s", "r", "a"):
            size = _text_size(arg, _MAX_VALUE_LEN, quoted=conversion != "s")
            if precision is not None:
                size = min(size, precision)
        elif conversion in ("d", "i", "o", "u", "x", "X", "c"):
            size = _int_len(arg) if isinstance(arg, int) else 330
        else:
            size = 330 + (6 if precision is None else precision)
        total += max(width, size)
        if total > _MAX_VALUE_LEN:
            _too_large(total)
    result = fmt % values
    _account(result, fmt)
    return result


def _check_format_spec(spec: str) -> None:
    for run in _DIGIT_RUN.findall(spec):
        if len(run) > 9 or int(run) > _MAX_VALUE_LEN:
            _too_large(_MAX_VALUE_LEN + 1)


class _CheckedFormatter(SandboxedFormatter):
    """``str.format`` for templates: sandboxed field lookup plus bounded widths and output."""

    def __init__(self, env: ImmutableSandboxedEnvironment, **kwargs: Any) -> None:
        super().__init__(env, **kwargs)
        self._total = 0

    def vformat(self, format_string: str, args: Any, kwargs: Any) -> str:
        self._total = len(format_string)
        return super().vformat(format_string, args, kwargs)

    def convert_field(self, value: Any, conversion: str | None) -> Any:
        if conversion is not None:
            size = _text_size(value, _MAX_VALUE_LEN, quoted=conversion != "s")
            if size > _MAX_VALUE_LEN:
                _too_large(size)
        return super().convert_field(value, conversion)

    def format_field(self, value: Any, format_spec: str) -> Any:
        _tick()
        _check_format_spec(format_spec)
        size = _text_size(value, _MAX_VALUE_LEN)
        if size > _MAX_VALUE_LEN:
            _too_large(size)
        text = super().format_field(value, format_spec)
        self._total += len(text)
        if self._total > _MAX_VALUE_LEN:
            _too_large(self._total)
        return text


class _CheckedEscapeFormatter(_CheckedFormatter, EscapeFormatter):
    pass


# --------------------------------------------------------------------------- filters


def _f_center(value: object, width: Any = 80) -> str:
    text = _to_text(value)
    if isinstance(width, int):
        _check_growth(width, len(text))
    return text.center(width)


def _f_indent(s: object, width: Any = 4, first: bool = False, blank: bool = False) -> str:
    text = s if isinstance(s, str) else _to_text(s)
    unit = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _check_growth(len(text) + (text.count("\n") + 2) * max(unit, 0), len(text))
    return jinja_filters.do_indent(text, width, first, blank)


def _f_join(eval_ctx: EvalContext, value: Iterable[Any], d: Any = "", attribute: Any = None) -> str:
    if attribute is not None:
        getter = jinja_filters.make_attrgetter(eval_ctx.environment, attribute)
        value = map(getter, value)
    sep = _to_text(d)
    parts: list[str] = []
    total = 0
    for count, item in enumerate(value):
        if not count & _TICK_EVERY:
            _tick()
        text = _to_text(item)
        total += len(text) + len(sep)
        if total > _MAX_VALUE_LEN:
            _too_large(total)
        parts.append(text)
    _charge(total)
    if eval_ctx.autoescape:
        return jinja_filters.sync_do_join(eval_ctx, parts, d)
    return sep.join(parts)


@pass_eval_context
def _f_replace(
    eval_ctx: EvalContext, s: object, old: object, new: object, count: Any = None
) -> str:
    text, old_text, new_text = _to_text(s), _to_text(old), _to_text(new)
    hits = text.count(old_text) if old_text else len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    _check_growth(len(text) + hits * (len(new_text) - len(old_text)), len(text))
    return jinja_filters.do_replace(eval_ctx, text, old_text, new_text, count)


def _f_wordwrap(
    environment: ImmutableSandboxedEnvironment,
    s: object,
    width: int = 79,
    break_long_words: bool = True,
    wrapstring: object = None,
    break_on_hyphens: bool = True,
) -> str:
    text = _to_text(s)
    sep = environment.newline_sequence if wrapstring is None else _to_text(wrapstring)
    _check_growth(len(text))
    paragraphs: list[list[str]] = []
    lines = chars = 0
    for paragraph in text.splitlines():
        _tick()
        wrapped = textwrap.wrap(
            paragraph,
            width=width,
            expand_tabs=False,
            replace_whitespace=False,
            break_long_words=break_long_words,
            break_on_hyphens=break_on_hyphens,
        )
        lines += len(wrapped) + 1
        chars += sum(map(len, wrapped))
        _check_growth(chars + lines * len(sep), len(text))
        paragraphs.append(wrapped)
    return sep.join(sep.join(wrapped) for wrapped in paragraphs)


def _f_format(value: object, *args: Any, **kwargs: Any) -> str:
    if args and kwargs:
        raise FilterArgumentError("can't handle positional and keyword arguments at the same time")
    return _percent(_to_text(value), kwargs or args)


def _f_batch(value: Iterable[Any], linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(linecount, int):
        _check_growth(linecount)
    for batch in jinja_filters.do_batch(value, linecount, fill_with):
        _charge(len(batch) + 8)
        yield batch


def _f_slice(value: Iterable[Any], slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(slices, int):
        _check_growth(slices)
    for part in jinja_filters.sync_do_slice(list(value), slices, fill_with):
        _charge(len(part) + 8)
        yield part


def _f_round(value: Any, precision: Any = 0, method: Any = "common") -> float:
    if isinstance(precision, int) and abs(precision) > _MAX_ROUND_DIGITS:
        _fail(RenderError(f"round() precision is limited to {_MAX_ROUND_DIGITS} digits"))
    return jinja_filters.do_round(value, precision, method)


def _f_sum(
    environment: ImmutableSandboxedEnvironment,
    iterable: Iterable[Any],
    attribute: Any = None,
    start: Any = 0,
) -> Any:
    if attribute is not None:
        iterable = map(jinja_filters.make_attrgetter(environment, attribute), iterable)
    total = start
    for count, item in enumerate(iterable):
        if not count & _TICK_EVERY:
            _tick()
        if isinstance(total, str) or isinstance(item, str):
            _fail(RenderError("sum cannot add text; use the join filter"))
        if isinstance(total, (list, tuple)) and isinstance(item, (list, tuple)):
            _check_growth(len(total) + len(item))
            _charge(len(total) + len(item))
        total = total + item
        _check_int(total)
    return total


def _f_tojson(eval_ctx: EvalContext, value: Any, indent: Any = None) -> Markup:
    if (isinstance(indent, int) and indent > _MAX_JSON_INDENT) or (
        isinstance(indent, str) and len(indent) > _MAX_JSON_INDENT
    ):
        _fail(RenderError(f"tojson indent is limited to {_MAX_JSON_INDENT}"))
    size = _text_size(value, _MAX_VALUE_LEN, quoted=True)
    if size > _MAX_VALUE_LEN:
        _too_large(size)
    encoder = json.JSONEncoder(sort_keys=True, indent=indent)
    parts: list[str] = []
    total = 0
    for count, chunk in enumerate(encoder.iterencode(value)):
        if not count & _TICK_EVERY:
            _tick()
        total += len(chunk)
        if total > _MAX_VALUE_LEN:
            _too_large(total)
        parts.append(chunk)
    _charge(total)
    text = "".join(parts)
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, escaped)
    return Markup(text)  # noqa: S704 - JSON text with <>&' escaped, as Jinja's tojson


def _f_pprint(value: Any) -> str:
    size = _text_size(value, _PPRINT_LIMIT, quoted=True)
    if size > _PPRINT_LIMIT:
        _fail(
            PromptTooLarge(
                f"pprint is limited to values of {_PPRINT_LIMIT:,} characters",
                details={"limit": _PPRINT_LIMIT, "size": size},
            )
        )
    return pformat(value)


_REPLACED_FILTERS: Final[dict[str, Callable[..., Any]]] = {
    "batch": _f_batch,
    "center": _f_center,
    "format": _f_format,
    "indent": _f_indent,
    "join": pass_eval_context(_f_join),
    "pprint": _f_pprint,
    "replace": _f_replace,
    "round": _f_round,
    "slice": _f_slice,
    "string": _to_text,
    "sum": pass_environment(_f_sum),
    "tojson": pass_eval_context(_f_tojson),
    "wordwrap": pass_environment(_f_wordwrap),
}
_REMOVED_FILTERS: Final = frozenset({"urlize"})  # HTML-only and amplifies by its link attributes
_TEXT_FILTERS: Final = frozenset(
    {
        "capitalize",
        "e",
        "escape",
        "forceescape",
        "lower",
        "safe",
        "striptags",
        "title",
        "trim",
        "truncate",
        "upper",
        "urlencode",
        "wordcount",
        "xmlattr",
    }
)
"""Stock filters that call ``str()`` on their input: the text is estimated first."""
_SPLITTING_FILTERS: Final = frozenset({"list", "wordcount"})
"""Filters that make one object per character or word of a string input."""


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a filter with the deadline, a text-size pre-check and result accounting.

    Every wrapper takes the context, which also stops Jinja from running filters at compile
    time on constant arguments (``{{ 'x'|center(1000000000) }}`` would run in the compiler).
    """
    pass_arg = _PassArg.from_obj(func)
    stringifies = name in _TEXT_FILTERS
    splits = name in _SPLITTING_FILTERS

    def guarded(context: Context, value: Any, /, *args: Any, **kwargs: Any) -> Any:
        _tick()
        if stringifies and not isinstance(value, str):
            size = _text_size(value, _MAX_VALUE_LEN)
            if size > _MAX_VALUE_LEN:
                _too_large(size)
        elif splits and isinstance(value, str) and len(value) > _MAX_VALUE_LEN:
            _too_large(len(value))
        if pass_arg is _PassArg.context:
            result = func(context, value, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = func(context.eval_ctx, value, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = func(context.environment, value, *args, **kwargs)
        else:
            result = func(value, *args, **kwargs)
        _account(result, value)
        return result

    guarded.__name__ = f"filter_{name}"
    guarded.__doc__ = func.__doc__
    return pass_context(guarded)


# --------------------------------------------------------------------------- str methods


def _arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, key: str) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(key)


def _check_text_method(
    name: str, owner: str | bytes, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> tuple[Any, ...]:
    """Bound what a ``str``/``bytes`` method will build before it runs; returns the args."""
    size = len(owner)
    if name in ("center", "ljust", "rjust", "zfill"):
        width = _arg(args, kwargs, 0, "width")
        if isinstance(width, int):
            _check_growth(width, size)
    elif name == "expandtabs":
        tabsize = _arg(args, kwargs, 0, "tabsize")
        tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")
        width = 8 if tabsize is None else tabsize
        if isinstance(width, int):
            _check_growth(size + tabs * max(width, 0), size)
    elif name == "join" and args:
        items = list(args[0])
        total = size * max(len(items) - 1, 0)
        total += sum(len(item) for item in items if isinstance(item, (str, bytes)))
        _check_growth(total)
        args = (items, *args[1:])
    elif name == "replace":
        old, new = _arg(args, kwargs, 0, "old"), _arg(args, kwargs, 1, "new")
        count = _arg(args, kwargs, 2, "count")
        if isinstance(old, (str, bytes)) and isinstance(new, (str, bytes)):
            try:
                hits = owner.count(old) if old else size + 1  # type: ignore[arg-type]
            except TypeError:
                hits = 0
            if isinstance(count, int) and count >= 0:
                hits = min(hits, count)
            _check_growth(size + hits * (len(new) - len(old)), size)
    elif name == "translate" and isinstance(owner, str) and args:
        table = args[0]
        if isinstance(table, abc.Mapping):
            targets: Iterable[object] = table.values()
        elif isinstance(table, (list, tuple)):
            targets = table
        else:
            _fail(RenderError("str.translate needs a dict or a list in templates"))
        widest = max((len(v) if isinstance(v, str) else 1 for v in targets), default=1)
        _check_growth(size * widest, size)
    elif name in ("split", "rsplit", "splitlines") and size > _MAX_VALUE_LEN:
        _too_large(size)  # one object per piece: ~50 bytes each
    elif name in ("encode", "decode"):
        if size > _MAX_VALUE_LEN:  # error handlers such as backslashreplace grow it 10-fold
            _too_large(size)
        encoding = _arg(args, kwargs, 0, "encoding") or "utf-8"
        try:
            codec = codecs.lookup(encoding).name
        except (LookupError, TypeError):
            codec = ""
        if codec not in _SAFE_CODECS:
            _fail(RenderError(f"encoding {str(encoding)[:40]!r} is not allowed in templates"))
    return args


# --------------------------------------------------------------------------- undefined


class _Missing(UndefinedError):
    """``UndefinedError`` that remembers which name was missing."""

    def __init__(self, message: str, name: object, is_variable: bool) -> None:
        super().__init__(message)
        self.name = name
        self.is_variable = is_variable


class _RaiseMissing:
    """Stands in for the exception class Jinja stores on each undefined value."""

    __slots__ = ("is_variable", "name")

    def __init__(self, name: object, is_variable: bool) -> None:
        self.name = name
        self.is_variable = is_variable

    def __call__(self, message: str | None = None) -> _Missing:
        return _Missing(message or "undefined value", self.name, self.is_variable)


_short_repr = reprlib.Repr()
_short_repr.maxstring = 80
_short_repr.maxother = 80


class _Undefined(StrictUndefined):
    """``StrictUndefined`` whose error names the missing variable and never reprs a huge key."""

    __slots__ = ()

    def __init__(
        self,
        hint: str | None = None,
        obj: Any = missing,
        name: str | None = None,
        exc: type[Exception] = UndefinedError,
    ) -> None:
        if exc is UndefinedError:
            raiser: Any = _RaiseMissing(name, obj is missing and hint is None)
            super().__init__(hint, obj, name, raiser)
        else:
            super().__init__(hint, obj, name, exc)  # type: ignore[arg-type]

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint[:300]
        name = _short_repr.repr(self._undefined_name)
        if self._undefined_obj is missing:
            return f"{name} is undefined"
        owner = type(self._undefined_obj).__name__
        if isinstance(self._undefined_name, str):
            return f"'{owner} object' has no attribute {name}"
        return f"{owner} object has no element {name}"


# --------------------------------------------------------------------------- code generation


class _Buffer(list[str]):
    """Output buffer of macros, ``{% set %}`` blocks and ``caller()``: size-checked per piece."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        super().__init__()
        self.size = 0

    def append(self, piece: str, /) -> None:
        size = len(piece)
        self.size += size
        if self.size > _MAX_VALUE_LEN:
            _too_large(self.size)
        _charge(size)
        list.append(self, piece)

    def extend(self, pieces: Iterable[str], /) -> None:
        for piece in pieces:
            self.append(piece)


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator with checked buffers, checked ``~`` and guarded loops.

    Jinja forbids custom node types, so loop iterables are wrapped while writing code instead.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_iterables: set[int] = set()

    def buffer(self, frame: Frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.new_buffer()")

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in self._loop_iterables:
            return super().visit(node, *args, **kwargs)
        self.write("environment.guard_iter(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Compare(self, node: nodes.Compare, frame: Frame) -> None:
        # Comparisons are the one C-level operation no sandbox hook sees; thousands of
        # ``{% if a == b %}`` on multi-megabyte variables would otherwise run unchecked.
        self.write("(environment.tick() or ")
        super().visit_Compare(node, frame)
        self.write(")")

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat(context.eval_ctx, (")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class _GuardedIterable:
    """Iterates like the wrapped iterable, checking the deadline every 256 items."""

    __slots__ = ("_iterable", "_render")

    def __init__(self, iterable: Any, render: _Render) -> None:
        self._iterable = iterable
        self._render = render

    def __len__(self) -> int:
        return len(self._iterable)

    def __iter__(self) -> Iterator[Any]:
        render = self._render
        for count, item in enumerate(self._iterable, 1):
            if not count & _TICK_EVERY:
                render.tick()
            yield item


# --------------------------------------------------------------------------- environment


def _finalize(value: Any) -> Any:
    """Every ``{{ … }}`` goes through here: containers are size-checked before ``str()``."""
    if type(value) is str:
        return value
    return _to_text(value)


class _Environment(ImmutableSandboxedEnvironment):
    """The one Jinja environment: sandboxed, immutable, no loader, every hook bounded."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(
            undefined=_Undefined,
            autoescape=False,
            finalize=_finalize,
            keep_trailing_newline=True,
            loader=None,
            cache_size=0,
            auto_reload=False,
        )
        del self.globals["lipsum"]  # lipsum(n=10**9) amplifies; prompts do not need it
        self.filters = {
            name: _guard_filter(name, _REPLACED_FILTERS.get(name, func))
            for name, func in self.filters.items()
            if name not in _REMOVED_FILTERS
        }

    # Hooks called by the generated code ------------------------------------------------

    def concat(self, pieces: Iterable[str]) -> str:
        if type(pieces) is not _Buffer:
            buffer = _Buffer()
            buffer.extend(pieces)
            pieces = buffer
        return "".join(pieces)

    def tick(self) -> None:
        render = _tls.render
        if render is not None:
            render.tick()

    def new_buffer(self) -> _Buffer:
        return _Buffer()

    def guard_iter(self, iterable: Iterable[Any]) -> Iterable[Any]:
        render = _tls.render
        if render is None:
            return iterable
        render.tick()
        return _GuardedIterable(iterable, render)

    def checked_concat(self, eval_ctx: EvalContext, values: tuple[Any, ...]) -> str:
        parts = [_to_text(value) for value in values]
        total = sum(map(len, parts))
        _check_growth(total, max(map(len, parts), default=0))
        _charge(total)
        if eval_ctx.autoescape:
            return markup_join(parts)
        return "".join(parts)

    # Sandbox hooks -----------------------------------------------------------------------

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            _check_multiply(left, right)
        elif operator == "**":
            if (
                type(left) is int
                and type(right) is int
                and right > 0
                and abs(left) > 1
                and left.bit_length() * right > _MAX_INT_BITS
            ):
                _number_too_large()
        elif operator == "+":
            if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
                _check_growth(len(left) + len(right), max(len(left), len(right)))
        elif operator == "%" and isinstance(left, (str, bytes)):
            if isinstance(left, bytes):
                _fail(RenderError("bytes cannot be %-formatted in templates"))
            return _percent(left, right)
        result = self.binop_table[operator](left, right)
        _account(result, left)
        return result

    def call(
        self, context: Context, obj: Any, /, *args: Any, **kwargs: Any
    ) -> Any:  # the sandbox routes every call in a template through here
        _tick()
        if not self.is_safe_callable(obj):
            raise SecurityError(f"{type(obj).__name__} object is not safely callable")
        if isinstance(obj, LoopContext) and args:  # recursive loop(children)
            args = (self.guard_iter(args[0]), *args[1:])
        if isinstance(obj, types.BuiltinMethodType):
            kwargs.pop("_loop_vars", None)  # scope markers the code generator adds
            kwargs.pop("_block_vars", None)
            owner = obj.__self__
            if isinstance(owner, (str, bytes)):
                args = _check_text_method(obj.__name__, owner, args, kwargs)
                result = obj(*args, **kwargs)
                _account(result, owner)
                return result
            if type(owner) is int and obj.__name__ == "to_bytes":
                length = _arg(args, kwargs, 0, "length")
                if isinstance(length, int):
                    _check_growth(length)
            _check_args((*args, *kwargs.values()))
            result = context.call(obj, *args, **kwargs)
            if obj.__name__ in ("copy", "fromkeys"):
                _account(result, owner)
            return result
        return context.call(obj, *args, **kwargs)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Same as Jinja's, with a formatter that bounds widths and output size."""
        if not isinstance(value, (types.MethodType, types.BuiltinMethodType)) or (
            value.__name__ not in ("format", "format_map")
        ):
            return None
        owner = value.__self__
        if not isinstance(owner, str):
            return None
        str_type = type(owner)
        is_format_map = value.__name__ == "format_map"
        formatter: _CheckedFormatter
        if isinstance(owner, Markup):
            formatter = _CheckedEscapeFormatter(self, escape=owner.escape)
        else:
            formatter = _CheckedFormatter(self)

        def wrapper(*args: Any, **kwargs: Any) -> str:
            if is_format_map:
                if kwargs:
                    raise TypeError("format_map() takes no keyword arguments")
                if len(args) != 1:
                    raise TypeError(f"format_map() takes exactly one argument ({len(args)} given)")
                kwargs = args[0]
                args = ()
            result = str_type(formatter.vformat(owner, args, kwargs))
            _charge(len(result))
            return result

        return functools.update_wrapper(wrapper, value)


def _check_multiply(left: Any, right: Any) -> None:
    if type(left) is int and type(right) is int:
        if left.bit_length() + right.bit_length() > _MAX_INT_BITS + 1:
            _number_too_large()
        return
    if isinstance(right, int) and isinstance(left, (str, bytes, list, tuple)):
        sequence, times = left, right
    elif isinstance(left, int) and isinstance(right, (str, bytes, list, tuple)):
        sequence, times = right, left
    else:
        return
    if times > 1:
        _check_growth(len(sequence) * times)


_ENV: Final = _Environment()


# --------------------------------------------------------------------------- compile


class _Compiled(NamedTuple):
    template: Template
    variables: tuple[str, ...]


_UNSUPPORTED: Final[dict[type[nodes.Node], str]] = {
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
}
"""There is no loader (no file, no other prompt is reachable); say so at save time."""


def _utf8_len(text: str, what: str) -> int:
    if text.isascii():
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValidationFailed(
            f"the {what} contains an unpaired surrogate and is not valid UTF-8"
        ) from None


def _check_source(source: str) -> None:
    if not isinstance(source, str):
        raise ValidationFailed("template_source must be text")
    if "\x00" in source:
        raise ValidationFailed(
            "the template contains a NUL character, which cannot be stored; remove it",
            details={"field": "template_source"},
        )
    size = _utf8_len(source, "template")
    if size > MAX_TEMPLATE_BYTES:
        raise InvalidTemplate(
            f"the template is {size:,} bytes; the limit is {MAX_TEMPLATE_BYTES:,}",
            details={"limit": MAX_TEMPLATE_BYTES, "size": size},
        )
    tags = _tag_count(source)
    if tags > _MAX_TEMPLATE_TAGS:
        raise InvalidTemplate(
            f"the template has {tags:,} tags; the limit is {_MAX_TEMPLATE_TAGS:,}",
            details={"limit_tags": _MAX_TEMPLATE_TAGS, "tags": tags},
        )


def _tag_count(source: str) -> int:
    return source.count("{{") + source.count("{%")


def _syntax_error(exc: TemplateSyntaxError) -> InvalidTemplate:
    message = (exc.message or "invalid syntax")[:300]
    return InvalidTemplate(
        f"invalid template at line {exc.lineno}: {message}",
        details={"line": exc.lineno, "error": message},
    )


class _TemplateCache:
    """LRU of compiled templates, bounded by entry count and by weight.

    ``functools.lru_cache`` only bounds the count, and 512 maximal templates would hold ~1 GB.
    """

    def __init__(self, max_entries: int, max_weight: int) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[_Compiled, int]] = OrderedDict()
        self._max_entries = max_entries
        self._max_weight = max_weight
        self.weight = 0
        self.hits = 0
        self.misses = 0

    def get(self, source: str) -> _Compiled:
        with self._lock:
            entry = self._entries.get(source)
            if entry is not None:
                self._entries.move_to_end(source)
                self.hits += 1
                return entry[0]
            self.misses += 1
        compiled = _compile_uncached(source)  # outside the lock: may take a second
        weight = len(source) + 200 * _tag_count(source)
        with self._lock:
            if source not in self._entries:
                self._entries[source] = (compiled, weight)
                self.weight += weight
                while len(self._entries) > self._max_entries or self.weight > self._max_weight:
                    _, (_, dropped) = self._entries.popitem(last=False)
                    self.weight -= dropped
        return compiled


def _compile_uncached(source: str) -> _Compiled:
    """Parse, check and compile one source text."""
    try:
        tree = _ENV.parse(source)
        for node in tree.find_all(tuple(_UNSUPPORTED)):
            tag = _UNSUPPORTED[type(node)]
            raise InvalidTemplate(
                f"invalid template at line {node.lineno}: '{tag}' is not supported;"
                " each prompt must be self-contained",
                details={"line": node.lineno, "error": f"{tag} is not supported"},
            )
        names = meta.find_undeclared_variables(tree) - _ENV.globals.keys()
        code = _ENV.compile(tree)
        template = _ENV.template_class.from_code(_ENV, code, _ENV.make_globals(None), None)
    except TemplateSyntaxError as exc:
        raise _syntax_error(exc) from None
    except PromptLedgerError:
        raise
    except Exception as exc:  # RecursionError, SyntaxError (nesting), ValueError (int literal)
        raise InvalidTemplate(
            f"the template cannot be compiled: {_short_message(exc)}",
            details={"error": type(exc).__name__},
        ) from None
    return _Compiled(template, tuple(sorted(names)))


_CACHE = _TemplateCache(_CACHE_ENTRIES, _CACHE_WEIGHT)


def template_variables(source: str) -> list[str]:
    """Validate a template and return the sorted names of the variables it uses.

    Raises ``InvalidTemplate`` (with the line) for syntax errors, unknown filters or tests,
    ``include``/``extends``/``import`` and oversized sources; ``ValidationFailed`` for NUL.
    The compiled template is cached for ``render``. Compiling takes ~10 ms for a typical prompt
    and up to ~0.7 s for one with the maximum number of tags: call it off the event loop.
    """
    _check_source(source)
    return list(_CACHE.get(source).variables)


# --------------------------------------------------------------------------- watchdog


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


# --------------------------------------------------------------------------- render


def _template_line(exc: BaseException, template: Template) -> int | None:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == _TEMPLATE_FILE:
            line = template.get_corresponding_lineno(tb.tb_lineno)
        tb = tb.tb_next
    return line if isinstance(line, int) else None


def _short_message(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:
        return f"missing key {_short_repr.repr(exc.args[0])}"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def _domain_error(exc: BaseException, template: Template) -> PromptLedgerError:
    """Map whatever a render raised to the spec's 422 errors, with the template line."""
    line = _template_line(exc, template)
    where = "" if line is None else f" (line {line})"
    located: dict[str, Any] = {} if line is None else {"line": line}
    if isinstance(exc, _Abort):
        exc.error.details = {**located, **exc.error.details}
        return exc.error
    if isinstance(exc, _Missing):
        name = exc.name if isinstance(exc.name, str) else _short_repr.repr(exc.name)
        if exc.is_variable:
            return RenderError(
                f"variable '{name}' is not defined{where}; pass it in variables",
                details={"variable": name},
            )
        return RenderError(f"{_short_message(exc)}{where}", details={"attribute": name, **located})
    if isinstance(exc, SecurityError):
        return RenderError(
            f"the template tried something the sandbox forbids{where}: {_short_message(exc)}",
            details={"error": "security", **located},
        )
    if isinstance(exc, TemplateSyntaxError):
        return _syntax_error(exc)
    if isinstance(exc, RecursionError):
        return RenderError(f"template recursion is too deep{where}", details=located)
    if isinstance(exc, MemoryError):
        return RenderError(f"the template ran out of memory{where}", details=located)
    return RenderError(
        f"rendering failed{where}: {type(exc).__name__}: {_short_message(exc)}",
        details={"error": type(exc).__name__, **located},
    )


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
    """Render ``source`` with ``variables`` (blocking; see the module docstring for limits).

    Raises ``InvalidTemplate``, ``RenderError`` (missing variable, sandbox violation, timeout,
    runtime error), ``PromptTooLarge`` or ``ValidationFailed`` (NUL, unpaired surrogate).
    Compiling an uncached template happens before the deadline starts.
    """
    _check_source(source)
    template = _CACHE.get(source).template
    state = _Render(timeout_s)
    error: PromptLedgerError | None = None
    try:
        return _WATCHDOG.run(state, lambda: _stream(template, variables, max_bytes))
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
    """Threads do not survive fork (Celery prefork): start fresh ones on demand."""
    global _executor_instance, _WATCHDOG, _executor_lock
    _tls.render = None
    _executor_instance = None
    _executor_lock = threading.Lock()
    _WATCHDOG = _Watchdog()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
