"""Garbage-collector settings for the long-running processes (``serve``, ``worker``)."""

from __future__ import annotations

import gc

# A young-generation pass every 20,000 allocations instead of 700: with hundreds of requests
# or executions in flight the default spent ~0.2 ms of CPU per request collecting (measured,
# docs/performance.md); cycles are still collected, a little later.
GC_THRESHOLDS = (20_000, 20, 20)


def freeze_and_tune() -> None:
    """Freeze what exists now (imports, app, engine: it lives as long as the process, so full
    passes need not walk it; ~110 ms pauses were measured otherwise) and raise the
    thresholds. Call once, after start-up."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
