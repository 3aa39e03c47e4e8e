"""The web page's serving, its error hints, and the /stream posteriors it draws bars from
(no browser needed; tests/e2e/test_ui_browser.py drives the page in chromium)."""

import re
from pathlib import Path

import pytest
import torch
from _clips import wave
from tracekws.service.problems import TYPES

STATIC = Path(__file__).resolve().parents[2] / "service" / "static"


def test_index_served_with_a_strict_csp(client):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "unsafe-inline" not in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="static/app.js">' in r.text
    assert "/" not in client.get("/openapi.json").json()["paths"]  # not an API route


def test_every_file_the_page_loads_is_served(client):
    html = (STATIC / "index.html").read_text()
    refs = set(re.findall(r'(?:src|href)="(static/[^"]+)"', html))
    js = "".join(p.read_text() for p in STATIC.glob("*.js"))
    refs |= {f"static/{m}" for m in re.findall(r'from "\./([\w.-]+)"', js)}
    refs |= {f"static/{m}" for m in re.findall(r'new URL\("([\w.-]+)", import\.meta\.url\)', js)}
    assert {"static/app.js", "static/app.css", "static/audio.js", "static/problems.js",
            "static/capture-worklet.js"} <= refs
    types = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for ref in refs:
        r = client.get("/" + ref)
        assert r.status_code == 200, ref
        assert r.headers["content-type"].startswith(types[Path(ref).suffix]), ref
    # flat folder: pyproject's package-data glob (static/*) ships every file
    assert all(p.is_file() for p in STATIC.iterdir())


@pytest.mark.parametrize("path", ["/static/nope.js", "/static/../main.py",
                                  "/static/%2e%2e/main.py", "/static/..%2fsettings.py"])
def test_static_stays_in_its_folder(client, path):
    r = client.get(path)
    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"


def test_page_needs_no_key_when_the_api_does(make_client):
    c = make_client(api_keys="0123456789abcdef0123", predict_requires_key=True)
    assert c.get("/").status_code == 200
    assert c.get("/static/app.js").status_code == 200
    assert c.get("/profiles/default/versions").status_code == 401


def test_page_has_a_hint_for_every_problem_code():
    text = (STATIC / "problems.js").read_text()
    block = text[text.index("export const HINTS"):text.index("};")]
    hints = dict(re.findall(r'^\s*"([a-z-]+)":\s*"([^"]*)"', block, re.M))
    missing = set(TYPES) - set(hints)
    assert not missing, f"problems.js has no hint for {sorted(missing)}"
    assert all(hints[c] for c in TYPES)


def _pcm(word="yes", i=0):
    return (wave(word, i) * 32767).to(torch.int16).numpy().tobytes()


def test_stream_posteriors_on_request(client):
    pcm = _pcm() * 2  # 2 s
    with client.websocket_connect("/stream?threshold=0.01&posteriors=true") as ws:
        ready = ws.receive_json()
        labels = ready["labels"]
        for i in range(0, len(pcm), 1600):  # 50 ms messages
            ws.send_bytes(pcm[i:i + 1600])
        msgs = [ws.receive_json()]
        while msgs[-1]["type"] != "posteriors" or msgs[-1]["time"] < 1.85:
            msgs.append(ws.receive_json())
    post = [m for m in msgs if m["type"] == "posteriors"]
    assert any(m["type"] == "detection" for m in msgs)
    assert set(post[0]) == {"type", "time", "probabilities"}
    for m in post:
        assert list(m["probabilities"]) == labels
        assert abs(sum(m["probabilities"].values()) - 1) < 1e-3
    times = [m["time"] for m in post]
    assert times == sorted(times) and times[-1] <= 2.0 and len(times) >= 15
    # at most one per 0.1 s of audio, although audio came every 0.05 s
    assert all(b - a >= 0.1 - 1e-9 for a, b in zip(times, times[1:], strict=False))


def test_stream_posteriors_once_per_message_and_after_reset(client):
    pcm = _pcm()
    with client.websocket_connect("/stream?posteriors=1&threshold=1") as ws:
        ws.receive_json()
        ws.send_bytes(pcm)  # 1 s in one message: one posteriors message, not ten
        first = ws.receive_json()
        assert first["type"] == "posteriors" and first["time"] == pytest.approx(1.0, abs=0.05)
        ws.send_text("reset")
        ws.send_bytes(pcm[:3200])
        again = ws.receive_json()
        assert again["type"] == "posteriors" and again["time"] <= 0.1


def test_stream_posteriors_parameter_checked(client):
    from starlette.websockets import WebSocketDisconnect

    with client.websocket_connect("/stream?posteriors=maybe") as ws:
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["problem"]["status"] == 422
        with pytest.raises(WebSocketDisconnect) as e:
            ws.receive_json()
        assert e.value.code == 4422


def test_every_element_the_script_uses_is_on_the_page():
    html = (STATIC / "index.html").read_text()
    ids = set(re.findall(r'\bid="([\w-]+)"', html))
    used = set(re.findall(r'\$\("([\w-]+)"\)', (STATIC / "app.js").read_text()))
    assert {"word-guide", "word-count", "word-check", "words", "word-list"} <= used
    assert used <= ids, f"app.js uses ids the page lacks: {sorted(used - ids)}"
    assert " style=" not in html  # the CSP forbids inline styles: the script sets them by CSSOM


def test_the_word_guide_quotes_only_measured_numbers():
    """What the enrolment guide promises is what docs/enrol.md measured, and it says where."""
    html = (STATIC / "index.html").read_text()
    guide = html[html.index('id="word-guide"'):html.index('id="enrol-result"')]
    quoted = {float(n) for n in re.findall(r"(\d+(?:\.\d+)?) %", guide)}
    doc = (STATIC.parents[1] / "docs" / "enrol.md").read_text()
    measured = {float(n) for n in re.findall(r"(\d+(?:\.\d+)?) %", doc)}
    assert {80.0, 1.4, 13.3, 75.0} <= quoted  # detection, own words, others' voices, the room
    assert quoted <= measured, f"not in docs/enrol.md: {sorted(quoted - measured)}"
    assert "docs/enrol.md" in guide and "unusable" in guide


def test_the_page_reads_the_words_api_it_relies_on(client):
    """The fields and version rules app.js reads are the ones the service answers and makes."""
    from tracekws.service.store import DETECTOR_RULE, WORD_REMOVED_RULE, WORD_THRESHOLD_RULE

    js = (STATIC / "app.js").read_text()
    answer = client.get("/profiles/default/words").json()
    for field in ("enrols_words", "recommended_recordings", "default_threshold", "max_threshold",
                  "words", "version"):
        assert field in answer and re.search(rf"\.{field}\b", js), field
    for rule in (DETECTOR_RULE, WORD_THRESHOLD_RULE, WORD_REMOVED_RULE):
        assert f'"{rule}"' in js, rule
    for field in ("prob_before", "utterances", "parent"):  # the consistency check, from /adapt
        assert f"res.{field}" in js, field
