"""A small Prometheus registry (text exposition format 0.0.4) and the request middleware.

Route labels use the route template (``/profiles/{profile}/versions``), never the raw path,
so the number of series stays bounded whatever clients send.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(d: tuple[tuple[str, str], ...]) -> str:
    if not d:
        return ""
    return "{" + ",".join(f'{k}="{_esc(v)}"' for k, v in d) + "}"


class Metrics:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.gauges: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self.hists: dict[str, dict[tuple, list]] = defaultdict(dict)
        self.help: dict[str, tuple[str, str]] = {}
        self._describe()

    def _describe(self) -> None:
        for name, kind, text in [
            ("tracekws_http_requests_total", "counter", "HTTP requests by route and status."),
            ("tracekws_http_requests_in_flight", "gauge", "HTTP requests being handled."),
            ("tracekws_http_request_duration_seconds", "histogram",
             "HTTP request latency by route."),
            ("tracekws_predictions_total", "counter", "Predictions served."),
            ("tracekws_adaptations_total", "counter", "/adapt calls by outcome."),
            ("tracekws_adapt_utterances_total", "counter", "Utterances learned by /adapt."),
            ("tracekws_adapt_duration_seconds", "histogram", "Wall time of successful /adapt."),
            ("tracekws_adapt_audio_seconds_total", "counter", "Audio seconds consumed by /adapt."),
            ("tracekws_stream_connections", "gauge", "Open /stream WebSocket connections."),
            ("tracekws_stream_detections_total", "counter", "Keyword detections on /stream."),
            ("tracekws_model_cache_entries", "gauge", "Models held in the in-memory cache."),
            ("tracekws_corrupt_weights_total", "counter", "Weight blobs failing sha256 checks."),
            ("tracekws_busy_total", "counter", "/predict calls refused: no decode slot."),
        ]:
            self.help[name] = (kind, text)

    def inc(self, name: str, value: float = 1.0, **labels: str) -> None:
        with self.lock:
            self.counters[name][tuple(sorted(labels.items()))] += value

    def set(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.gauges[name][tuple(sorted(labels.items()))] = value

    def add(self, name: str, value: float, **labels: str) -> None:
        with self.lock:
            self.gauges[name][tuple(sorted(labels.items()))] += value

    def observe(self, name: str, value: float, **labels: str) -> None:
        key = tuple(sorted(labels.items()))
        with self.lock:
            h = self.hists[name].get(key)
            if h is None:
                h = self.hists[name][key] = [[0] * len(BUCKETS), 0.0, 0]
            for i, b in enumerate(BUCKETS):
                if value <= b:
                    h[0][i] += 1
            h[1] += value
            h[2] += 1

    def render(self) -> str:
        out: list[str] = []
        with self.lock:
            for name, (kind, text) in sorted(self.help.items()):
                out.append(f"# HELP {name} {text}")
                out.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for key, v in sorted(self.counters.get(name, {}).items()):
                        out.append(f"{name}{_labels(key)} {v:g}")
                elif kind == "gauge":
                    for key, v in sorted(self.gauges.get(name, {}).items()):
                        out.append(f"{name}{_labels(key)} {v:g}")
                else:
                    for key, (counts, total, n) in sorted(self.hists.get(name, {}).items()):
                        for b, c in zip(BUCKETS, counts, strict=True):
                            out.append(f"{name}_bucket{_labels(key + (('le', f'{b:g}'),))} {c}")
                        out.append(f"{name}_bucket{_labels(key + (('le', '+Inf'),))} {n}")
                        out.append(f"{name}_sum{_labels(key)} {total:.6f}")
                        out.append(f"{name}_count{_labels(key)} {n}")
        return "\n".join(out) + "\n"


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
