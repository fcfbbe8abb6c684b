"""Missing variables and attributes: a strict error that names what is missing.

``StrictUndefined`` refuses to print, iterate or compare a missing value; this one also keeps
the missing name, so the render error can say which variable to pass, and never reprs a huge
key into the message.
"""

from __future__ import annotations

import reprlib
from typing import Any

from jinja2 import StrictUndefined, UndefinedError
from jinja2.utils import missing


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
