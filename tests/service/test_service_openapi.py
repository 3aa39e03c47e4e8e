"""OpenAPI that tells the truth (issue "Hardening"): every status a route answers is in its
documented responses as application/problem+json, /predict and /adapt document their audio
and multipart bodies, a 405 names every method of its path in ``Allow``, and /docs is
Swagger UI from local files under a Content-Security-Policy (no CDN)."""

from __future__ import annotations

import re

import pytest
from _clips import wave
from tracekws.model.audio import encode_wav

PROBLEM = "application/problem+json"
AUDIO = {"content-type": "audio/wav"}
KEY = "k" * 16 + "-alice"
OTHER = "o" * 16 + "-other"


@pytest.fixture(scope="module")
def wav() -> bytes:
    return encode_wav(wave("yes", 0))


def _op(schema: dict, method: str, path: str) -> dict:
    return schema["paths"][path][method.lower()]


def test_every_error_response_is_a_problem(client):
    schema = client.get("/openapi.json").json()
    problem = schema["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code"} <= set(problem["required"])
    assert "corrupt-weights" in problem["properties"]["code"]["enum"]
    n = 0
    for path, ops in schema["paths"].items():
        for method, op in ops.items():
            statuses = {int(s) for s in op["responses"]}
            assert 500 in statuses, (method, path)
            for status, resp in op["responses"].items():
                if int(status) >= 400:
                    n += 1
                    assert list(resp["content"]) == [PROBLEM], (method, path, status)
                    assert resp["content"][PROBLEM]["schema"] == {
                        "$ref": "#/components/schemas/Problem"}
                    assert resp["description"]
            if method in ("post", "put", "patch", "delete"):  # CSRF rule and body types
                assert {403, 415} <= statuses, (method, path)
            if "{profile}" in path or method != "get" or path == "/predict":
                assert 422 in statuses or path in ("/readyz",), (method, path)
    assert n > 60
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # not our 422


def test_audio_request_bodies_are_documented(client):
    schema = client.get("/openapi.json").json()
    for path in ("/predict", "/adapt"):
        body = _op(schema, "post", path)["requestBody"]
        assert body["required"] is True
        content = body["content"]
        for media in ("audio/wav", "audio/flac", "audio/ogg", "application/octet-stream"):
            assert content[media]["schema"] == {"type": "string", "format": "binary"}
        form = content["multipart/form-data"]["schema"]
        assert form["required"] == ["file"] and form["properties"]["file"]["format"] == "binary"
    assert "application/json" in _op(schema, "post", "/profiles")["requestBody"]["content"]
    adapt = _op(schema, "post", "/adapt")["responses"]
    assert {"200", "201"} <= set(adapt)  # a replayed Idempotency-Key answers 200


def _documented(schema: dict, method: str, path: str, status: int) -> bool:
    return str(status) in _op(schema, method, path)["responses"]


def test_the_statuses_routes_answer_are_documented(make_client, wav):
    """Provoke what can be provoked on each route and check each answer is documented."""
    open_ = make_client(max_upload_bytes=64 * 1024)
    keyed = make_client(api_keys=f"{KEY}:alice {OTHER}", predict_requires_key=True,
                        data_dir=open_.app.state.settings.data_dir.parent / "keyed")
    schema = open_.get("/openapi.json").json()
    assert open_.post("/adapt", params={"profile": "alice", "label": "yes"}, content=wav,
                      headers=AUDIO).status_code == 201
    big = b"\0" * (65 * 1024)
    bearer = {"authorization": f"Bearer {KEY}"}
    cases = [  # (client, method, url, template, kwargs, expected status)
        (open_, "POST", "/predict", "/predict", {"content": wav, "headers": AUDIO}, 200),
        (open_, "POST", "/predict?profile=nobody", "/predict", {"content": wav,
                                                               "headers": AUDIO}, 404),
        (open_, "POST", "/predict", "/predict", {"content": b"x" * 300, "headers": AUDIO}, 422),
        (open_, "POST", "/predict", "/predict", {"content": b"x",
                                                 "headers": {"content-type": "text/plain"}},
         415),
        (open_, "POST", "/predict", "/predict", {"content": big, "headers": AUDIO}, 413),
        (open_, "POST", "/predict", "/predict", {
            "content": b"--x\r\ngarbage", "headers": {"content-type": "multipart/form-data"}},
         400),
        (open_, "POST", "/predict", "/predict", {"content": wav, "headers": {
            **AUDIO, "origin": "https://evil.example"}}, 403),
        (keyed, "POST", "/predict", "/predict", {"content": wav, "headers": AUDIO}, 401),
        (open_, "POST", "/adapt?profile=alice&label=yes", "/adapt",
         {"content": wav, "headers": AUDIO}, 201),
        (open_, "POST", "/adapt?profile=default&label=yes", "/adapt",
         {"content": wav, "headers": AUDIO}, 403),
        (open_, "POST", "/adapt?profile=alice&label=%20x", "/adapt",
         {"content": wav, "headers": AUDIO}, 422),
        (keyed, "POST", "/adapt?profile=bob&label=yes", "/adapt",
         {"content": wav, "headers": {**AUDIO, **bearer}}, 403),
        (open_, "GET", "/profiles", "/profiles", {}, 200),
        (open_, "POST", "/profiles", "/profiles", {"json": {"name": "carol"}}, 201),
        (open_, "POST", "/profiles", "/profiles", {"json": {"name": "carol"}}, 409),
        (open_, "POST", "/profiles", "/profiles", {"json": {"name": "-"}}, 422),
        (open_, "POST", "/profiles", "/profiles", {"content": b"{}" + b" " * 70_000,
                                                   "headers": {"content-type":
                                                               "application/json"}}, 413),
        (keyed, "POST", "/profiles", "/profiles", {"json": {"name": "zed"}}, 401),
        (open_, "GET", "/profiles/alice", "/profiles/{profile}", {}, 200),
        (open_, "GET", "/profiles/nobody", "/profiles/{profile}", {}, 404),
        (open_, "GET", "/profiles/a%20b", "/profiles/{profile}", {}, 422),
        (keyed, "GET", "/profiles/bob", "/profiles/{profile}", {"headers": bearer}, 403),
        (open_, "DELETE", "/profiles/default", "/profiles/{profile}", {}, 403),
        (open_, "DELETE", "/profiles/nobody", "/profiles/{profile}", {}, 404),
        (open_, "DELETE", "/profiles/carol", "/profiles/{profile}", {}, 204),
        (open_, "GET", "/profiles/alice/versions", "/profiles/{profile}/versions", {}, 200),
        (open_, "GET", "/profiles/nobody/versions", "/profiles/{profile}/versions", {}, 404),
        (open_, "GET", "/profiles/alice/versions/2", "/profiles/{profile}/versions/{version}",
         {}, 200),
        (open_, "GET", "/profiles/alice/versions/9", "/profiles/{profile}/versions/{version}",
         {}, 404),
        (open_, "GET", "/profiles/alice/versions/0", "/profiles/{profile}/versions/{version}",
         {}, 422),
        (open_, "POST", "/profiles/alice/versions/1/activate",
         "/profiles/{profile}/versions/{version}/activate", {}, 200),
        (open_, "POST", "/profiles/alice/versions/9/activate",
         "/profiles/{profile}/versions/{version}/activate", {}, 404),
        (open_, "POST", "/profiles/alice/versions/1/activate",
         "/profiles/{profile}/versions/{version}/activate",
         {"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
        (open_, "GET", "/profiles/alice/versions/2/weights",
         "/profiles/{profile}/versions/{version}/weights", {}, 200),
        (open_, "GET", "/profiles/alice/versions/x/weights",
         "/profiles/{profile}/versions/{version}/weights", {}, 422),
        (keyed, "GET", "/profiles/alice/versions/1/weights",
         "/profiles/{profile}/versions/{version}/weights", {}, 401),
        (open_, "GET", "/profiles/alice/detector", "/profiles/{profile}/detector", {}, 200),
        (open_, "GET", "/profiles/nobody/detector", "/profiles/{profile}/detector", {}, 404),
        (open_, "GET", "/profiles/a%20b/detector", "/profiles/{profile}/detector", {}, 422),
        (keyed, "GET", "/profiles/alice/detector", "/profiles/{profile}/detector", {}, 401),
        (open_, "PUT", "/profiles/alice/detector", "/profiles/{profile}/detector",
         {"json": {"thresholds": {"yes": 0.7}}}, 201),
        (open_, "PUT", "/profiles/alice/detector", "/profiles/{profile}/detector",
         {"json": {"thresholds": {"yes": 0.7}}}, 200),
        (open_, "PUT", "/profiles/alice/detector", "/profiles/{profile}/detector",
         {"json": {"thresholds": {"lights": 0.7}}}, 422),
        (open_, "PUT", "/profiles/nobody/detector", "/profiles/{profile}/detector",
         {"json": {"thresholds": {"yes": 0.7}}}, 404),
        (open_, "PUT", "/profiles/default/detector", "/profiles/{profile}/detector",
         {"json": {"thresholds": {"yes": 0.7}}}, 403),
        (open_, "PUT", "/profiles/alice/detector", "/profiles/{profile}/detector",
         {"content": b"x", "headers": {"content-type": "text/plain"}}, 415),
        (open_, "PUT", "/profiles/alice/detector", "/profiles/{profile}/detector",
         {"content": b"{}" + b" " * 70_000, "headers": {"content-type": "application/json"}},
         413),
        (keyed, "PUT", "/profiles/alice/detector", "/profiles/{profile}/detector",
         {"json": {"thresholds": {"yes": 0.7}}}, 401),
        (open_, "GET", "/healthz", "/healthz", {}, 200),
        (open_, "GET", "/readyz", "/readyz", {}, 200),
        (open_, "GET", "/metrics", "/metrics", {}, 200),
    ]
    for c, method, url, template, kw, want in cases:
        r = c.request(method, url, **kw)
        assert r.status_code == want, (method, url, r.status_code, r.text[:300])
        assert _documented(schema, method, template, r.status_code), (method, url, want)
        if r.status_code >= 400:
            assert r.headers["content-type"] == PROBLEM


def test_405_allow_lists_every_method_of_the_path(client):
    schema = client.get("/openapi.json").json()
    tried = 0
    for path, ops in schema["paths"].items():
        methods = {m.upper() for m in ops}
        url = re.sub(r"\{version\}", "1", path.replace("{profile}", "alice"))
        for wrong in sorted({"GET", "POST", "PUT", "PATCH", "DELETE"} - methods):
            r = client.request(wrong, url)
            assert r.status_code == 405, (wrong, url, r.text)
            assert r.headers["content-type"] == PROBLEM
            assert set(r.headers["allow"].split(", ")) == methods, (wrong, url, r.headers)
            assert r.json()["code"] == "method-not-allowed"
            tried += 1
    assert tried > 30
    assert client.put("/profiles").headers["allow"] == "GET, POST"
    assert client.post("/profiles/x").headers["allow"] == "GET, DELETE"
    assert client.get("/predict").headers["allow"] == "POST"


def test_docs_are_local_with_a_csp(client):
    pytest.importorskip("fastapi_offline")
    r = client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "http" not in csp and "cdn" not in csp
    html = r.text
    assert "http://" not in html and "https://" not in html and "<script>" not in html
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert {"docs/assets/swagger-ui-bundle.js", "docs/assets/swagger-ui.css",
            "static/swagger-init.js"} <= set(refs)
    for ref in refs:
        a = client.get("/" + ref)
        assert a.status_code == 200 and len(a.content) > 100, ref
        assert "content-security-policy" in a.headers
    assert "SwaggerUIBundle" in client.get("/docs/assets/swagger-ui-bundle.js").text
    assert client.get("/docs/assets/../../settings.py").status_code == 404
    assert client.get("/docs/assets/index.html").status_code == 404
    assert client.get("/redoc").status_code == 404  # FastAPI's loads from a CDN: off
    assert client.get("/openapi.json").status_code == 200


def test_schema_constraints_match_what_is_enforced(client, wav):
    """Found by schemathesis: the documented label and profile body are what the service
    accepts (a 65-character label, or "store_audio": 0, is refused)."""
    schema = client.get("/openapi.json").json()
    label = next(p for p in _op(schema, "post", "/adapt")["parameters"] if p["name"] == "label")
    assert (label["schema"]["minLength"], label["schema"]["maxLength"]) == (1, 64)
    r = client.post("/adapt", params={"profile": "p", "label": "x" * 65}, content=wav,
                    headers=AUDIO)
    assert r.status_code == 422 and r.json()["code"] == "invalid-label"
    for bad in ({"name": "p", "store_audio": 0}, {"name": "p", "store_audio": "yes"}):
        r = client.post("/profiles", json=bad)
        assert r.status_code == 422 and r.json()["code"] == "validation-error", r.text
    assert client.post("/profiles", json={"name": "p", "store_audio": False}).status_code == 201
