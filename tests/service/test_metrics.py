"""/metrics through prometheus-client: the exposition parses, today's names and labels are
kept, process metrics are there, counters move after a /predict, and each app has its own
registry (several apps live in one test process)."""

from __future__ import annotations

import pytest
from _clips import wave
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from tracekws.model.audio import encode_wav
from tracekws.service.metrics import SPECS, Metrics

AUDIO = {"content-type": "audio/wav"}


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of a text exposition (parsing it is the check)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def _families(text: str) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(text)}


def test_exposition_parses_with_every_declared_metric_and_process_metrics(client):
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    fams = _families(r.text)
    for name, (kind, _, _) in SPECS.items():
        # the parser reports a counter's family without its _total suffix
        assert fams[name.removesuffix("_total") if kind == "counter" else name] == kind, name
    for name in ("process_resident_memory_bytes", "process_cpu_seconds",
                 "process_open_fds", "process_start_time_seconds", "python_info"):
        assert name in fams, name
    s = _samples(r.text)
    assert s[("process_resident_memory_bytes", ())] > 10e6  # torch alone is far above this
    assert not any(n.endswith("_created") for n, _ in s)  # no extra series per label set


def test_counters_move_after_a_predict(client):
    before = _samples(client.get("/metrics").text)
    r = client.post("/predict", content=encode_wav(wave("yes", 0)), headers=AUDIO)
    assert r.status_code == 200
    after = _samples(client.get("/metrics").text)
    assert after[("tracekws_predictions_total", ())] == \
        before[("tracekws_predictions_total", ())] + 1
    key = ("tracekws_http_requests_total",
           (("method", "POST"), ("route", "/predict"), ("status", "200")))
    assert key not in before and after[key] == 1
    hist = (("method", "POST"), ("route", "/predict"))
    assert after[("tracekws_http_request_duration_seconds_count", hist)] == 1
    assert after[("tracekws_http_request_duration_seconds_bucket",
                  (("le", "+Inf"), *hist))] == 1
    assert after[("tracekws_http_request_duration_seconds_sum", hist)] > 0
    assert after[("tracekws_http_requests_in_flight", ())] == 1  # the scrape itself
    assert ("tracekws_model_cache_entries", ()) in after  # set by the route at scrape time
    # the rendered label order is today's (sorted), which existing scrapers grep for
    text = client.get("/metrics").text
    assert 'tracekws_http_requests_total{method="POST",route="/predict",status="200"} 1' in text


def test_openmetrics_when_the_scraper_asks(client):
    r = client.get("/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"})
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    assert r.text.endswith("# EOF\n")
    names = {f.name for f in openmetrics_families(r.text)}
    assert {"tracekws_predictions", "process_resident_memory_bytes"} <= names


def test_each_app_has_its_own_registry(make_client):
    a, b = make_client(), make_client()
    a.post("/predict", content=encode_wav(wave("no", 0)), headers=AUDIO)
    assert _samples(a.get("/metrics").text)[("tracekws_predictions_total", ())] == 1
    assert _samples(b.get("/metrics").text)[("tracekws_predictions_total", ())] == 0


def test_the_name_based_api():
    m = Metrics()
    m.inc("tracekws_adaptations_total", outcome="ok")
    m.inc("tracekws_adapt_audio_seconds_total", 1.5)
    m.add("tracekws_stream_connections", 1)
    m.add("tracekws_stream_connections", 1)
    m.add("tracekws_stream_connections", -1)
    m.set("tracekws_model_cache_entries", 3)
    m.observe("tracekws_adapt_duration_seconds", 0.3)
    s = _samples(m.render())
    assert s[("tracekws_adaptations_total", (("outcome", "ok"),))] == 1
    assert s[("tracekws_adapt_audio_seconds_total", ())] == 1.5
    assert s[("tracekws_stream_connections", ())] == 1
    assert s[("tracekws_model_cache_entries", ())] == 3
    assert s[("tracekws_adapt_duration_seconds_bucket", (("le", "0.25"),))] == 0
    assert s[("tracekws_adapt_duration_seconds_bucket", (("le", "0.5"),))] == 1
    with pytest.raises(KeyError, match="SPECS"):
        m.inc("tracekws_not_declared_total")
    with pytest.raises(ValueError):  # labels must match the declaration
        m.inc("tracekws_adaptations_total", result="ok")
