"""Template sources: checked before compiling, compiled once, cached within a weight.

Compiling runs outside the render deadline and its cost follows the tags, so a source is
refused when it is too long, has too many tags, holds a NUL or needs a loader
(``include``/``extends``/``import``: no file and no other prompt is reachable). Compiled
templates are cached by source text in an LRU bounded by entries and by weight.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Final, NamedTuple

from jinja2 import Template, TemplateSyntaxError, meta, nodes

from prompt_ledger.errors import InvalidTemplate, PromptLedgerError, ValidationFailed
from prompt_ledger.services.rendering.environment import _ENV
from prompt_ledger.services.rendering.failures import _short_message, _syntax_error

MAX_TEMPLATE_BYTES: Final = 204_800
"""Template source cap. Compiling costs ~5 µs per byte and runs outside the render deadline, and
a template longer than the largest renderable prompt cannot be a useful prompt."""

_MAX_TEMPLATE_TAGS: Final = 5000
"""``{{ }}`` and ``{% %}`` tags per template. Compile cost follows tags, not text: 11,000 tags
take ~1.4 s and ~135 MB to compile, 5,000 about half that; static text is nearly free."""
_CACHE_ENTRIES: Final = 512
_CACHE_WEIGHT: Final = 32 << 20
"""Compiled templates kept, weighed as source bytes plus ~200 bytes of code per tag."""


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
