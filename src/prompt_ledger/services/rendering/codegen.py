"""Jinja's code generator, changed where generated code does work no sandbox hook sees.

The output buffers of macros, ``{% set %}`` blocks and ``caller()`` are size-checked lists,
``~`` is a size-checked concatenation, every comparison checks the deadline first (a C-level
compare of multi-megabyte strings is otherwise unchecked) and every ``{% for %}`` iterable is
wrapped so that loops check the deadline every 256 iterations. The generated code calls the
environment's hooks (``environment.py``) for all of these.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame, optimizeconst

from prompt_ledger.services.rendering.budget import (
    _MAX_VALUE_LEN,
    _TICK_EVERY,
    _charge,
    _Render,
    _too_large,
)


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
