"""POST /adapt: stream a recording of one label through the network, learning as the bytes
arrive, and commit exactly one new version (the work: :meth:`service.profiles.Profiles.adapt`).
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from ..auth import authorize
from ..deps import ProfilesDep
from ..problems import Problem, responses
from ..runtime import runtime
from ..settings import RULES
from ..store import VersionInfo
from ..upload import AUDIO_BODY, audio_chunks, check_headers
from ..validation import LABEL_SCHEMA, ProfileQuery, validate_label

router = APIRouter(tags=["adapt"])
log = logging.getLogger("tracekws.service")


def _replay(info: VersionInfo, label: str) -> JSONResponse:
    """The answer of the /adapt call that made ``info``, for a retry with its key (200)."""
    if info.label != label:
        raise Problem("idempotency-key-reused", f"this Idempotency-Key made version "
                      f"{info.number} for label {info.label!r}, not {label!r}")
    m = info.metrics
    body = {"profile": info.profile, "version": info.number, "parent": info.parent,
            "label": info.label, "new_label": m.get("new_label"),
            "utterances": m.get("utterances", info.clips),
            "prob_before": round(m.get("prob_before", 0.0), 6),
            "prob_after": round(m.get("prob_after", 0.0), 6), "rule": info.rule,
            "hyperparameters": info.hyperparameters, "sha256": info.sha256,
            "audio_seconds": round(m.get("audio_seconds", 0.0), 3), "replayed": True}
    return JSONResponse(body, status_code=200, headers={
        "Location": f"/profiles/{info.profile}/versions/{info.number}",
        "Idempotent-Replayed": "true"})


def _check_key(key: str | None) -> None:
    if key is not None and not (1 <= len(key) <= 128 and key.isascii() and key.isprintable()):
        raise Problem("validation-error", "Idempotency-Key must be 1-128 printable ASCII "
                      "characters")


@router.post("/adapt", status_code=201, summary="Personalise a profile on a recording",
             responses={200: {"description": "A retried `Idempotency-Key`: the version the "
                              "first call made (`Idempotent-Replayed: true`)"},
                        **responses("adapt")},
             openapi_extra={"requestBody": AUDIO_BODY})
async def adapt(
    request: Request,
    svc: ProfilesDep,
    profile: ProfileQuery,
    label: str = Query(..., max_length=1024, description="the word spoken (new words enrol): "
                       "1-64 characters, no control characters or surrounding whitespace",
                       json_schema_extra=LABEL_SCHEMA),
    rule: Literal[RULES] | None = Query(
        None, description="learning rule (default: the profile's, else the service's)"),
    epochs: int | None = Query(None, ge=1, le=20),
    lr: float | None = Query(None, gt=0, le=0.1, description="hidden-layer rate (default: "
                             "the rule's for words; none for _unknown_ and _silence_, which "
                             "teach the readout alone)"),
    lr_out: float | None = Query(None, gt=0, le=10, description="readout step (logit units "
                                 "with the default normalised delta rule)"),
    optimizer: Literal["adam", "sgd"] | None = Query(None),
    update_every: int | None = Query(None, ge=1, le=1000),
    contrast: Literal["classes", "batch"] | None = Query(None),
    readout: Literal["final", "frame"] | None = Query(None),
    norm_prior: float | None = Query(
        None, ge=0, le=1e7, description="weight, in frames, of the training statistics when the "
        "feature normalisation adapts to this recording (0: it does not)"),
    readout_orth: bool | None = Query(
        None, description="readout step orthogonal to the average utterance (default: on when "
        "the label is _unknown_ or _silence_, off for words)"),
    idempotency_key: str | None = Header(
        None, alias="Idempotency-Key", max_length=128,
        description="a retry with the same key (same profile) returns the version the first "
                    "call made (200, `Idempotent-Replayed: true`) instead of adding one"),
) -> Response:
    t0 = time.perf_counter()
    rt = runtime(request)
    s = rt.settings
    label = validate_label(label)
    _check_key(idempotency_key)
    svc.check_writable(profile)
    authorize(request, profile, write=True)
    check_headers(request, s.max_upload_bytes)  # 415 / 413 before anything else
    outcome = "error"
    try:
        done = await svc.adapt(
            profile, label, rule,
            {"epochs": epochs, "lr": lr, "lr_out": lr_out, "optimizer": optimizer,
             "update_every": update_every, "contrast": contrast, "readout": readout,
             "norm_prior": norm_prior, "readout_orth": readout_orth},
            audio_chunks(request, s.max_upload_bytes, s.upload_idle_timeout_s,
                         s.upload_timeout_s),
            idempotency_key)
        outcome = "replayed" if done.replayed else "ok"
    except ClientDisconnect:
        outcome = "disconnected"
        log.info("client went away during /adapt on %s; nothing committed", profile)
        return Response(status_code=400)
    finally:
        rt.metrics.inc("tracekws_adaptations_total", outcome=outcome)
    if done.replayed:
        return _replay(done.info, label)
    elapsed = time.perf_counter() - t0
    result, info = done.result, done.info
    rt.metrics.inc("tracekws_adapt_utterances_total", result.utterances)
    rt.metrics.inc("tracekws_adapt_audio_seconds_total", done.audio_seconds)
    rt.metrics.observe("tracekws_adapt_duration_seconds", elapsed)
    body = {
        "profile": profile,
        "version": info.number,
        "parent": done.parent,
        "label": label,
        "new_label": result.new_label,
        "utterances": result.utterances,
        "prob_before": round(result.prob_before, 6),
        "prob_after": round(result.prob_after, 6),
        "rule": info.rule,
        "hyperparameters": result.hyperparameters,
        "sha256": info.sha256,
        "audio_seconds": round(done.audio_seconds, 3),
        "latency_ms": round(elapsed * 1000, 3),
    }
    return JSONResponse(body, status_code=201,
                        headers={"Location": f"/profiles/{profile}/versions/{info.number}"})
