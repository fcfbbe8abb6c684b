"""Whatever a template raised, turned into one of the spec's 422 errors, located and short.

A hostile template can raise anything (a ``KeyError`` with a megabyte key, ``RecursionError``,
``MemoryError``, a sandbox ``SecurityError``); the caller gets a ``RenderError`` or an
``InvalidTemplate`` with the template line where one is known, and a message cut to a few
hundred characters.
"""

from __future__ import annotations

from typing import Any, Final

from jinja2 import Template, TemplateSyntaxError
from jinja2.exceptions import SecurityError

from prompt_ledger.errors import InvalidTemplate, PromptLedgerError, RenderError
from prompt_ledger.services.rendering.budget import _Abort
from prompt_ledger.services.rendering.undefined import _Missing, _short_repr

_TEMPLATE_FILE: Final = "<template>"


def _syntax_error(exc: TemplateSyntaxError) -> InvalidTemplate:
    message = (exc.message or "invalid syntax")[:300]
    return InvalidTemplate(
        f"invalid template at line {exc.lineno}: {message}",
        details={"line": exc.lineno, "error": message},
    )


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
