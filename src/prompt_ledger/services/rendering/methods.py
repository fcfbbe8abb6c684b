"""``str`` and ``bytes`` methods called from a template, bounded before they run.

``'x'.center(10**9)``, ``expandtabs``, ``join``, ``replace`` and ``translate`` build their
result in C where no hook can stop them, so its size is computed from the arguments first;
splitting a huge string (one object per piece) and pure-Python codecs are refused.
"""

from __future__ import annotations

import codecs
from collections import abc
from collections.abc import Iterable, Mapping
from typing import Any, Final

from prompt_ledger.errors import RenderError
from prompt_ledger.services.rendering.budget import _MAX_VALUE_LEN, _check_growth, _fail, _too_large

_SAFE_CODECS: Final = frozenset(
    {"utf-8", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be", "ascii"}
    | {"latin-1", "iso8859-1"}
)
"""``str.encode`` / ``bytes.decode`` codecs a template may use; others (``punycode``) are
pure-Python and quadratic."""


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
