"""``str.format`` and ``%`` formatting with bounded widths, precisions and output.

``'{:1000000000}'.format(x)`` and ``'%*d' % (10**9, 1)`` allocate in C before any hook sees
the result, so the width and precision of every field are read from the format first and the
output is added up field by field.
"""

from __future__ import annotations

import re
from collections import abc
from typing import Any, Final

from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from markupsafe import EscapeFormatter

from prompt_ledger.errors import RenderError
from prompt_ledger.services.rendering.budget import (
    _MAX_VALUE_LEN,
    _account,
    _fail,
    _tick,
    _too_large,
)
from prompt_ledger.services.rendering.sizes import _int_len, _text_size

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
