"""Upper bounds on the text of a value, found before ``str()`` or ``repr()`` builds it.

``[big] * n`` costs n pointers but its ``str()`` costs n copies, so every conversion of a
container to text (``{{ }}`` output, ``~``, text filters, ``%s``, call arguments that a builtin
would ``repr`` into its error message) is first estimated by walking the structure with an
early exit, and refused past the value cap.
"""

from __future__ import annotations

from collections import abc
from collections.abc import Iterable
from typing import Any, Final

from jinja2.runtime import Undefined
from jinja2.utils import Namespace

from prompt_ledger.services.rendering.budget import _MAX_VALUE_LEN, _charge, _too_large

_MAX_DEPTH: Final = 200


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
