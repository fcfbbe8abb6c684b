"""Jinja's stock filters, each wrapped with the deadline, a text-size check and accounting.

The amplifying ones (``center indent join replace wordwrap format batch slice round sum tojson
pprint``) are replaced by versions that bound their result before building it, and ``urlize``
is removed. The wrapper also takes the context, which keeps Jinja from running a filter at
compile time on constant arguments, outside every limit.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable, Iterator
from pprint import pformat
from typing import Any, Final

from jinja2 import filters as jinja_filters
from jinja2 import pass_context, pass_environment, pass_eval_context
from jinja2.exceptions import FilterArgumentError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from markupsafe import Markup

from prompt_ledger.errors import PromptTooLarge, RenderError
from prompt_ledger.services.rendering.budget import (
    _MAX_VALUE_LEN,
    _TICK_EVERY,
    _account,
    _charge,
    _check_growth,
    _check_int,
    _fail,
    _tick,
    _too_large,
)
from prompt_ledger.services.rendering.formatting import _percent
from prompt_ledger.services.rendering.sizes import _text_size, _to_text

_MAX_ROUND_DIGITS: Final = 4300
_MAX_JSON_INDENT: Final = 64
_PPRINT_LIMIT: Final = 1 << 16


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
