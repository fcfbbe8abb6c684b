"""Render user-supplied Jinja2 prompt templates with hard limits on time, memory and output.

Templates come from API callers, so they are hostile input. Jinja's sandbox stops
attribute-walking escapes but does nothing about resource use (``{{ 'x' * 10**9 }}``,
``{{ 9**(9**9) }}``, two nested ``range(100000)`` loops). Rendering stays in-process (a cached
``Hello {{ name }}`` costs ~10 µs, a subprocess per render would cost milliseconds), so every
path to runaway work is closed here, one module for each kind of hostile template:

- ``budget``: per-render deadline and allocation budget, caps on one value and one integer
  (the leaf module, holding the render state of the current thread).
- ``sizes``: ``str()``/``repr()`` of big containers (``[big] * n``), estimated before building.
- ``formatting``: ``str.format`` and ``%`` with huge widths, precisions or output.
- ``filters``: amplifying filters (``center``, ``join``, ``wordwrap``, ``tojson``…).
- ``methods``: amplifying ``str``/``bytes`` methods (``center``, ``replace``…) and slow codecs.
- ``undefined``: missing variables, reported by name without repr-ing a huge key.
- ``codegen``: work no sandbox hook sees: ``~``, macro and ``{% set %}`` buffers,
  comparisons, ``{% for %}`` loops.
- ``environment``: the sandboxed environment whose hooks apply all of the above, and
  the ``*``/``**``/``+``/``%`` checks.
- ``compiling``: oversized, NUL-carrying or loader-needing sources, compile cost (tag cap),
  and the weight-bounded template cache; ``template_variables``.
- ``watchdog``: library code still running past the deadline, stopped by an async exception.
- ``failures``: whatever a render raised, as a short, located 422 error.
- ``runner``: ``render``/``render_async``: output capped in UTF-8 bytes, NUL refused,
  template code kept off the event loop; ``render_messages`` for chat versions (each
  message's content a template, one placeholder filled with messages from a variable).

This package is the only place that imports jinja2. Only plain JSON-like data (str, int, float,
bool, None, list, dict) may be passed as variables: everything in the context is reachable from
the template.
"""

from prompt_ledger.services.rendering.compiling import MAX_TEMPLATE_BYTES, template_variables
from prompt_ledger.services.rendering.runner import (
    CHAT_ROLES,
    MAX_RENDERED_BYTES,
    PLACEHOLDER_NAME,
    render,
    render_async,
    render_messages,
    render_messages_async,
)

__all__ = [
    "CHAT_ROLES",
    "MAX_RENDERED_BYTES",
    "MAX_TEMPLATE_BYTES",
    "PLACEHOLDER_NAME",
    "render",
    "render_async",
    "render_messages",
    "render_messages_async",
    "template_variables",
]
