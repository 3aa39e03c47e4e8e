"""The service's Prometheus metrics (``prometheus-client``) and the request middleware.

Each app gets its own :class:`~prometheus_client.CollectorRegistry`: several apps live in one
test process, and the global registry would refuse the second app's metrics (and mix their
counts). Besides the service's own metrics the registry holds the standard process, platform
and garbage-collector collectors (``process_resident_memory_bytes``,
``process_cpu_seconds_total``, ``python_info``, ...), so a Pi's memory and CPU are scraped
alongside the request counts.

Callers keep the small name-based API (``inc``/``set``/``add``/``observe`` with keyword
labels) so routes do not import prometheus-client; every name and its label names are declared
once in :data:`SPECS`, which is what pins the exposition's names and labels.

Route labels use the route template (``/profiles/{profile}/versions``), never the raw path,
so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

# name -> (kind, help, label names). Label names are in sorted order: the hand-written
# registry this replaces sorted them, and scrapes/tests match on the rendered label order.
SPECS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tracekws_http_requests_total": ("counter", "HTTP requests by route and status.",
                                     ("method", "route", "status")),
    "tracekws_http_requests_in_flight": ("gauge", "HTTP requests being handled.", ()),
    "tracekws_http_request_duration_seconds": ("histogram", "HTTP request latency by route.",
                                               ("method", "route")),
    "tracekws_predictions_total": ("counter", "Predictions served.", ()),
    "tracekws_adaptations_total": ("counter", "/adapt calls by outcome.", ("outcome",)),
    "tracekws_adapt_utterances_total": ("counter", "Utterances learned by /adapt.", ()),
    "tracekws_adapt_duration_seconds": ("histogram", "Wall time of successful /adapt.", ()),
    "tracekws_adapt_audio_seconds_total": ("counter", "Audio seconds consumed by /adapt.", ()),
    "tracekws_stream_connections": ("gauge", "Open /stream WebSocket connections.", ()),
    "tracekws_stream_detections_total": ("counter", "Keyword detections on /stream.", ()),
    "tracekws_model_cache_entries": ("gauge", "Models held in the in-memory cache.", ()),
    "tracekws_corrupt_weights_total": ("counter", "Weight blobs failing sha256 checks.", ()),
    "tracekws_busy_total": ("counter", "/predict calls refused: no decode slot.", ()),
}

# Counters and histograms would otherwise each expose an extra ``*_created`` series per label
# set (doubling the HTTP series); the service never exposed them and dashboards use rate().
# The switch is process-wide in prometheus-client; this process serves only these metrics.
disable_created_metrics()


def _standard_collectors(registry: CollectorRegistry) -> None:
    """Process (RSS, CPU seconds, open fds, start time), platform (python_info) and GC."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)  # reads gc.get_stats() at scrape time: no hooks to leak


class Metrics:
    """One app's metrics, in its own registry; methods are thread-safe (prometheus-client
    locks each value), so routes, worker threads and the middleware share one instance."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._metrics: dict[str, Any] = {}
        for name, (kind, text, labels) in SPECS.items():
            if kind == "counter":
                # prometheus-client appends _total itself; the exposed name is unchanged
                m: Any = Counter(name.removesuffix("_total"), text, labels,
                                 registry=self.registry)
            elif kind == "gauge":
                m = Gauge(name, text, labels, registry=self.registry)
            else:
                m = Histogram(name, text, labels, buckets=BUCKETS, registry=self.registry)
            self._metrics[name] = m
        _standard_collectors(self.registry)

    def _child(self, name: str, labels: dict[str, str]) -> Any:
        try:
            m = self._metrics[name]
        except KeyError:
            raise KeyError(f"unknown metric {name!r}: declare it in service/metrics.py SPECS"
                           ) from None
        return m.labels(**labels) if labels else m

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        """Add ``value`` (≥ 0) to a counter."""
        self._child(name, labels).inc(value)

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set a gauge."""
        self._child(name, labels).set(value)

    def add(self, name: str, value: float, **labels: str) -> None:
        """Add ``value`` (may be negative) to a gauge."""
        self._child(name, labels).inc(value)

    def observe(self, name: str, value: float, **labels: str) -> None:
        """Record one observation in a histogram."""
        self._child(name, labels).observe(value)

    def render(self) -> str:
        """The classic text format (0.0.4)."""
        return generate_latest(self.registry).decode()

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """Body and content type for an ``Accept`` header: OpenMetrics when a scraper asks for
        it (Prometheus does), else the classic text format."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class MetricsMiddleware:
    """Pure ASGI middleware (does not buffer bodies): counts and times HTTP requests."""

    def __init__(self, app, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = {"code": 500}

        async def _send(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        self.metrics.add("tracekws_http_requests_in_flight", 1)
        try:
            await self.app(scope, receive, _send)
        finally:
            self.metrics.add("tracekws_http_requests_in_flight", -1)
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            m = scope["method"]
            self.metrics.inc("tracekws_http_requests_total", method=m, route=path,
                             status=str(status["code"]))
            self.metrics.observe("tracekws_http_request_duration_seconds",
                                 time.perf_counter() - t0, method=m, route=path)
