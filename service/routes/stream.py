"""WebSocket /stream: live keyword detection on 16 kHz 16-bit little-endian mono PCM.

Protocol: connect to ``/stream?profile=&version=&threshold=&posteriors=``; the server sends
``{"type": "ready", ...}`` (with ``thresholds``: the threshold each keyword is heard with,
``threshold``, ``refractory`` and their ``sources``: the version's own detector settings,
else its model's, else the service's; ``?threshold=`` replaces them all for this connection,
see :func:`tracekws.model.detect.detector_config`; and ``words``: the version's words of its
own, each detected once the utterance that says it has ended); then send binary messages of
PCM of any size (a sample may even be split across messages) and receive ``{"type": "detection",
"label", "probability", "time"}`` (``time``: seconds of audio since the stream started). With
``posteriors=true`` the server also sends ``{"type": "posteriors", "time", "probabilities":
{label: p}}`` (the smoothed per-class posteriors the detector thresholds) after a message of
PCM, at most once per ``POSTERIOR_INTERVAL`` seconds of audio. The text message ``reset``
restarts the stream state. Errors arrive as ``{"type": "error", "problem": {RFC 9457
fields}}`` followed by a close with code 4000 + HTTP status (e.g. 4404 unknown profile).

Authentication (when the stream needs a key): an ``Authorization: Bearer`` header, or, from
a browser (which cannot set WebSocket headers), a first text message
``{"type": "auth", "token": "<key>"}`` sent on open, within ``AUTH_TIMEOUT`` seconds; the
server answers ``ready`` after it. An ``auth`` message the server does not need is ignored.
``?token=`` in the URL is still accepted for older clients but puts the key in URLs;
logs never show it (:mod:`service.logfilter`).
"""

from __future__ import annotations

import json
import logging

import anyio
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from tracekws.model.detect import Detector

from ..auth import authorize, needs_key
from ..problems import Problem, problem_body, store_problem
from ..profiles import profiles
from ..runtime import runtime
from ..settings import DEFAULT_PROFILE, PROFILE_RE
from ..store import StoreError

router = APIRouter(tags=["stream"])
log = logging.getLogger("tracekws.service")
AUTH_TIMEOUT = 10.0  # seconds to wait for the first {"type": "auth"} message
POSTERIOR_INTERVAL = 0.1  # seconds of audio between two posteriors messages (at most)
_BOOL = {"1": True, "true": True, "yes": True, "on": True,
         "0": False, "false": False, "no": False, "off": False}


async def _fail(ws: WebSocket, p: Problem) -> None:
    body = problem_body(p.code, p.status, p.title, p.detail, ws.url.path)
    await ws.send_text(json.dumps({"type": "error", "problem": body}))
    await ws.close(code=4000 + p.status)


def _params(ws: WebSocket) -> tuple[str, int | None, float | None, bool]:
    q = ws.query_params
    profile = q.get("profile", DEFAULT_PROFILE)
    if not PROFILE_RE.match(profile):
        raise Problem("validation-error", "profile: invalid profile name")
    version = threshold = None
    try:
        if q.get("version") is not None:
            version = int(q["version"])
            if version < 1:
                raise ValueError
        if q.get("threshold") is not None:
            threshold = float(q["threshold"])
            if not 0.0 < threshold <= 1.0:
                raise ValueError
    except ValueError:
        raise Problem("validation-error",
                      "version must be an integer ≥ 1 and threshold a number in (0, 1]"
                      ) from None
    posteriors = _BOOL.get(q.get("posteriors", "false").lower())
    if posteriors is None:
        raise Problem("validation-error", "posteriors must be true or false")
    return profile, version, threshold, posteriors


def _auth_message(text: str | None) -> dict | None:
    """The ``{"type": "auth", "token": ...}`` message, or None."""
    if not text or '"auth"' not in text:
        return None
    try:
        msg = json.loads(text)
    except ValueError:
        return None
    return msg if isinstance(msg, dict) and msg.get("type") == "auth" else None


async def _first_message_token(ws: WebSocket) -> str:
    """The key of the first message, which must be an auth message."""
    try:
        with anyio.fail_after(AUTH_TIMEOUT):
            msg = await ws.receive()
    except TimeoutError:
        raise Problem("unauthorized", f"send {{\"type\": \"auth\", \"token\": <key>}} "
                      f"within {AUTH_TIMEOUT:g} s of opening the stream") from None
    if msg["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(msg.get("code", 1000))
    auth = _auth_message(msg.get("text"))
    if auth is None or not isinstance(auth.get("token"), str):
        raise Problem("unauthorized", "this stream needs a key: send {\"type\": \"auth\", "
                      "\"token\": <key>} as the first message (or Authorization: Bearer)")
    return auth["token"]


def _posteriors(det: Detector) -> str:
    probs = det.last_posterior.tolist()
    return json.dumps({"type": "posteriors", "time": round(det.seconds, 3), "probabilities": {
        label: round(p, 4) for label, p in zip(det.labels, probs, strict=True)}})


@router.websocket("/stream")
async def stream(ws: WebSocket) -> None:
    rt = runtime(ws)
    await ws.accept()
    try:
        profile, version, threshold, posteriors = _params(ws)
        token = None
        if needs_key(ws, write=False) and "authorization" not in ws.headers \
                and "token" not in ws.query_params:
            token = await _first_message_token(ws)
        authorize(ws, profile, write=False, token=token)
        resolved = await rt.io(profiles(ws).resolve, profile, version)
    except WebSocketDisconnect:
        return
    except Problem as p:
        await _fail(ws, p)
        return
    except StoreError as exc:
        await _fail(ws, store_problem(exc))
        return
    choice = profiles(ws).detector_choice(resolved, threshold)
    det = Detector(resolved.model, choice.config)
    rt.metrics.add("tracekws_stream_connections", 1)
    try:
        await ws.send_text(json.dumps({
            "type": "ready", "profile": profile, "version": resolved.info.number,
            "labels": resolved.model.labels, "words": resolved.model.enrolled_words(),
            "sample_rate": 16_000, "format": "s16le",
            **choice.public(resolved.model.labels)}))
        limit = rt.settings.stream_max_message_bytes
        next_posteriors = 0.0
        idle = rt.settings.stream_idle_timeout_s
        while True:
            try:
                with anyio.fail_after(idle):
                    msg = await ws.receive()
            except TimeoutError:
                await _fail(ws, Problem("stream-idle", f"no message for {idle:g} s"))
                break
            if msg["type"] == "websocket.disconnect":
                break
            data = msg.get("bytes")
            if data is None:
                text = (msg.get("text") or "").strip()
                if text in ("reset", '{"type": "reset"}', '{"type":"reset"}'):
                    det.reset()
                    next_posteriors = 0.0
                    continue
                if _auth_message(text) is not None:  # not needed (or already given)
                    continue
                await _fail(ws, Problem("unsupported-media-type",
                                        "send binary PCM messages (or the text 'reset')"))
                break
            if len(data) > limit:
                await _fail(ws, Problem("body-too-large",
                                        f"messages are limited to {limit} bytes"))
                break
            for d in await rt.compute(det.feed, data):
                rt.metrics.inc("tracekws_stream_detections_total")
                await ws.send_text(json.dumps({"type": "detection", **d.to_dict()}))
            if posteriors and det.frame and det.seconds >= next_posteriors:
                next_posteriors = det.seconds + POSTERIOR_INTERVAL
                await ws.send_text(_posteriors(det))
    except WebSocketDisconnect:
        pass
    finally:
        rt.metrics.add("tracekws_stream_connections", -1)
