"""HTTP request metrics, in-process: one histogram per method, route template and status.

The middleware is on every request's path, so it does the least it can: read the clock twice,
note the status from ``http.response.start``, and ``observe`` on a histogram child looked up
in a dict (``labels()`` runs once per new label set). The route label is the matched route's
template (``/v1/executions/{execution_id}``), never the raw path, and unknown methods are
folded into ``OTHER``, so clients cannot blow up the number of series.

Numbers are per process. Under ``serve --workers N`` (N > 1) set ``PROMETHEUS_MULTIPROC_DIR``
to an empty folder before start: prometheus_client then keeps the values in files there and a
scrape of any worker process reports the sum of all of them.
"""

from __future__ import annotations

import os
import time
from typing import Any

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
HTTP_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
UNMATCHED_ROUTE = "<unmatched>"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """The process's HTTP histogram and its registry (one per app)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self.duration = Histogram(
            "promptledger_http_request_duration_seconds",
            "HTTP requests by method, route template and status: _count is the request count",
            ("method", "route", "status"),
            buckets=HTTP_BOUNDS_S,
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        if method not in _METHODS:  # before the lookup: the cache must stay bounded too
            method = "OTHER"
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self.duration.labels(method, route, str(status))
        child.observe(seconds)

    def exposition(self) -> bytes:
        """This process's metrics, or every process's when prometheus_client is in
        multiprocess mode."""
        if os.environ.get(MULTIPROC_ENV):
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            return generate_latest(registry)
        return generate_latest(self.registry)


class HttpMetricsMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware: no extra task or body copy per request)."""

    def __init__(self, app: ASGIApp, *, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            route = scope.get("route")  # set by the router on a (full or partial) match
            self.metrics.observe(
                scope["method"],
                route.path if route is not None else UNMATCHED_ROUTE,
                status,
                time.perf_counter() - started,
            )
