"""The one Jinja environment: sandboxed, immutable, no loader, every hook bounded.

``ImmutableSandboxedEnvironment`` stops attribute-walking escapes (``''.__class__.__mro__``,
``cycler.__init__.__globals__``, the ``|attr('format')`` CVE) but, by its own documentation,
does nothing about resource use. Here ``* ** + %`` are refused before they run when the result
would pass the value or bit cap, ``str``/``bytes`` method calls go through ``methods.py``,
``str.format`` through ``formatting.py``, filters through ``filters.py``, and every ``{{ }}``
is size-checked before ``str()``. The hooks the code generator writes into templates
(``tick``, ``guard_iter``, ``checked_concat``, ``new_buffer``) are defined here too.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Iterable
from typing import Any, Final

from jinja2.exceptions import SecurityError
from jinja2.nodes import EvalContext
from jinja2.runtime import Context, LoopContext, markup_join
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

from prompt_ledger.errors import RenderError
from prompt_ledger.services.rendering.budget import (
    _MAX_INT_BITS,
    _account,
    _charge,
    _check_growth,
    _fail,
    _number_too_large,
    _tick,
    _tls,
)
from prompt_ledger.services.rendering.codegen import _Buffer, _CodeGenerator, _GuardedIterable
from prompt_ledger.services.rendering.filters import (
    _REMOVED_FILTERS,
    _REPLACED_FILTERS,
    _guard_filter,
)
from prompt_ledger.services.rendering.formatting import (
    _CheckedEscapeFormatter,
    _CheckedFormatter,
    _percent,
)
from prompt_ledger.services.rendering.methods import _arg, _check_text_method
from prompt_ledger.services.rendering.sizes import _check_args, _to_text
from prompt_ledger.services.rendering.undefined import _Undefined


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
