#!/usr/bin/env python3
"""Checks run *inside* the tracekws container by deploy/verify-arm64.sh.

Standard library only; talks to http://127.0.0.1:8000 only (the container runs with
--network none). Prints one line per check and, last, one JSON line with the results:
  first  --profile P --clip FILE=LABEL ... --adapt FILE=LABEL --repeats N
  second --profile P --expect-versions JSON [--clip FILE=ANY] [--what TEXT]
Exit status 1 (with a message) on the first failed check.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.request

BASE = "http://127.0.0.1:8000"
CTYPES = {".flac": "audio/flac", ".wav": "audio/wav", ".ogg": "audio/ogg"}


def fail(msg: str) -> None:
    print(f"FAIL: {msg}", flush=True)
    sys.exit(1)


def call(method: str, path: str, body: bytes | None = None, ctype: str | None = None,
         timeout: float = 900) -> tuple[int, dict, float]:
    req = urllib.request.Request(BASE + path, data=body, method=method)
    if ctype:
        req.add_header("Content-Type", ctype)
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            status, data = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, data = e.code, e.read()
    wall_ms = (time.perf_counter() - t0) * 1000
    try:
        js = json.loads(data)
    except ValueError:
        js = {"raw": data[:300].decode("utf-8", "replace")}
    return status, js, wall_ms


def wait_ready(timeout: float) -> dict:
    t0 = time.monotonic()
    while True:
        try:
            status, js, _ = call("GET", "/readyz", timeout=10)
            if status == 200:
                return js
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            fail(f"/readyz did not answer 200 within {timeout:.0f} s")
        time.sleep(0.5)


def common(res: dict, timeout: float) -> None:
    ready = wait_ready(timeout)
    res["ready_at"] = time.time()  # the host subtracts its `docker run` time (same clock)
    print(f"ok   /readyz: schema {ready.get('schema')}, labels {len(ready.get('labels', []))}, "
          f"database {ready.get('database')}", flush=True)
    status, js, _ = call("GET", "/healthz")
    if status != 200 or js.get("status") != "ok":
        fail(f"/healthz answered {status} {js}")
    print("ok   /healthz: ok", flush=True)
    # the server is PID 1 (exec-form ENTRYPOINT); it and this client must not be root
    with open("/proc/1/status") as f:
        uid = next(int(line.split()[1]) for line in f if line.startswith("Uid:"))
    if uid == 0 or os.getuid() == 0:
        fail(f"running as root (server uid {uid}, exec uid {os.getuid()})")
    res["server_uid"] = uid
    db = os.path.join(os.environ.get("TRACEKWS_DATA_DIR", "/data"), "tracekws.db")
    if not os.path.isfile(db):
        fail(f"no database at {db}")
    st = os.stat(db)
    res["db_owner_uid"] = st.st_uid
    print(f"ok   non-root: server uid {uid}, database {db} owned by uid {st.st_uid}", flush=True)


def versions(profile: str) -> list[dict]:
    status, js, _ = call("GET", f"/profiles/{profile}/versions")
    if status != 200:
        fail(f"GET /profiles/{profile}/versions answered {status} {js}")
    return [{"version": v["version"], "sha256": v["sha256"], "active": v.get("active")}
            for v in js["versions"]]


def audio(path: str) -> tuple[bytes, str]:
    """The file's bytes and the content type its extension names."""
    with open(path, "rb") as f:
        return f.read(), CTYPES.get(os.path.splitext(path)[1].lower(), "application/octet-stream")


def predict(profile: str, path: str) -> tuple[dict, float]:
    status, js, wall = call("POST", f"/predict?profile={profile}", *audio(path))
    if status != 200:
        fail(f"/predict {path} answered {status} {js}")
    return js, wall


def first(a: argparse.Namespace) -> dict:
    res: dict = {}
    common(res, a.timeout)
    res["predictions"] = []
    for spec in a.clip:
        path, want = spec.rsplit("=", 1)
        js, wall = predict("default", path)
        ok = js["label"] == want
        print(f"{'ok  ' if ok else 'FAIL'} /predict {os.path.basename(path)}: {js['label']} "
              f"(p={js['scores'][0]['probability']:.3f}; expected {want}; "
              f"first call {wall:.0f} ms wall)", flush=True)
        if not ok:
            fail(f"/predict gave {js['label']!r} for {path}, expected {want!r}")
        res["predictions"].append({"clip": os.path.basename(path), "label": js["label"],
                                   "probability": js["scores"][0]["probability"]})
    # timings: the same clip again, after the warm-up above
    path = a.clip[0].rsplit("=", 1)[0]
    walls, server = [], []
    for _ in range(a.repeats):
        js, wall = predict("default", path)
        walls.append(wall)
        server.append(js["latency_ms"])
    res["predict_wall_ms_median"] = statistics.median(walls)
    res["predict_server_ms_median"] = statistics.median(server)

    path, label = a.adapt.rsplit("=", 1)
    before = versions(a.profile) if _profile_exists(a.profile) else []
    status, js, wall = call("POST", f"/adapt?profile={a.profile}&label={label}", *audio(path))
    if status != 201:
        fail(f"/adapt answered {status} {js}")
    res["adapt_wall_ms"] = wall
    res["adapt_server_ms"] = js["latency_ms"]
    res["adapt_audio_s"] = js["audio_seconds"]
    after = versions(a.profile)
    # exactly one new version, and it is the active one (a profile created by its first
    # /adapt also lists version 1, the shipped model it started from)
    want = {b["version"] for b in before} | {js["version"]} | (set() if before else {1})
    active = [v["version"] for v in after if v["active"]]
    if {v["version"] for v in after} != want or len(after) != len(want) \
            or active != [js["version"]]:
        fail(f"/adapt did not add exactly one active version: before {before}, after {after}")
    print(f"ok   /adapt {a.profile} label={label}: version {js['version']} (parent "
          f"{js['parent']}), p {js['prob_before']:.3f} -> {js['prob_after']:.3f}; "
          f"{len(after)} versions listed", flush=True)
    res["versions"] = after
    js, _ = predict(a.profile, path)
    print(f"ok   /predict on profile {a.profile} (version {js['version']}): {js['label']}",
          flush=True)
    return res


def _profile_exists(profile: str) -> bool:
    status, _, _ = call("GET", f"/profiles/{profile}")
    return status == 200


def second(a: argparse.Namespace) -> dict:
    res: dict = {}
    common(res, a.timeout)
    want = json.loads(a.expect_versions)
    got = versions(a.profile)
    if got != want:
        fail(f"versions after the restart differ:\n  before {want}\n  after  {got}")
    print(f"ok   {a.what}: versions of {a.profile} all there: "
          f"{[v['version'] for v in got]} (same sha256, same active)", flush=True)
    res["versions"] = got
    active = next(v["version"] for v in got if v["active"])
    for spec in a.clip:
        path = spec.rsplit("=", 1)[0]
        js, _ = predict(a.profile, path)
        if js["version"] != active:
            fail(f"/predict on {a.profile} used version {js['version']}, active is {active}")
        print(f"ok   /predict on profile {a.profile} (version {active}): {js['label']}",
              flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("phase", choices=["first", "second"])
    p.add_argument("--profile", default="verify")
    p.add_argument("--clip", action="append", default=[], help="FILE=EXPECTED_LABEL")
    p.add_argument("--adapt", help="FILE=LABEL")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--expect-versions")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--what", default="after the restart", help="label for the versions check")
    a = p.parse_args()
    res = first(a) if a.phase == "first" else second(a)
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
