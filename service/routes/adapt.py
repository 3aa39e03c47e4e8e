"""POST /adapt: stream a recording of one label through the network, learning with TP as the
bytes arrive, and commit exactly one new version.

Per profile, adaptations are serialized by an in-process lock held from the first body byte
to the commit; the commit itself checks in one write transaction that the version the
adaptation started from is still the active one (a rollback or another process in between
gives 409 instead of a lost update).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect
from tracekws.model.adapt import AdaptSession
from tracekws.model.pipeline import KWSModel
from tracekws.model.stream_decode import StreamDecoder

from ..auth import authorize
from ..problems import Problem, responses
from ..runtime import Runtime, runtime
from ..settings import RULES, check_hyperparameters
from ..store import IdempotentReplay, UnknownProfile, VersionInfo, sha256
from ..upload import AUDIO_BODY, audio_chunks, check_headers
from ..validation import ProfileQuery, reserved_profile, validate_label

router = APIRouter(tags=["adapt"])
log = logging.getLogger("tracekws.service")


class _Job:
    """One adaptation: decoder + session (+ optional raw-audio spool). Touched by one worker
    thread at a time (each step is awaited before the next).

    Decoded audio is learned ``slice_samples`` at a time and, between two slices, the thread
    calls ``pause()`` (the prediction gate: it waits, bounded, while predictions are pending),
    so a long upload chunk does not hold the GIL against /predict for its whole duration."""

    def __init__(self, model: KWSModel, label: str, rule: str, hp: dict, max_seconds: float,
                 spool_dir: str, keep_audio: bool, slice_samples: int = 4000,
                 pause: Callable[[], None] = lambda: None) -> None:
        self.slice, self.pause = max(1, slice_samples), pause
        self.session = AdaptSession(model.clone(), label, rule, **hp)
        self.decoder = StreamDecoder(max_seconds=max_seconds, spool_dir=spool_dir)
        self.raw = None
        if keep_audio:
            import tempfile

            self.raw = tempfile.NamedTemporaryFile(dir=spool_dir, delete=False)  # noqa: SIM115

    def feed(self, data: bytes) -> None:
        if self.raw is not None:
            self.raw.write(data)
        self._learn(self.decoder.feed(data))

    def _learn(self, samples) -> None:
        for i in range(0, samples.numel(), self.slice):
            if i:
                self.pause()
            self.session.feed(samples[i : i + self.slice])

    def finish(self) -> tuple[Any, bytes]:
        for block in self.decoder.close_blocks():
            if block.numel():
                self.pause()
                self._learn(block)
        self.pause()
        result = self.session.finish()
        return result, self.session.model.to_bytes()

    def abort(self) -> None:
        self.decoder.abort()
        if self.raw is not None:
            self.raw.close()
            os.unlink(self.raw.name)
            self.raw = None

    def keep_raw(self, dest) -> str | None:
        if self.raw is None:
            return None
        self.raw.close()
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.raw.name, dest)
        self.raw = None
        return str(dest)


def _hyperparameters(rt: Runtime, rule: str | None, given: dict[str, Any]
                     ) -> tuple[str, dict[str, Any]]:
    s = rt.settings
    rule = rule or s.adapt_rule
    hp = dict(s.adapt_hyperparameters) if rule == s.adapt_rule else {}
    hp.update({k: v for k, v in given.items() if v is not None})
    try:
        check_hyperparameters(rule, hp)
    except ValueError as exc:
        raise Problem("validation-error", str(exc)) from None
    return rule, hp


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
    profile: ProfileQuery,
    label: str = Query(..., max_length=1024, description="the word spoken (new words enrol): "
                       "1-64 characters, no control characters or surrounding whitespace",
                       json_schema_extra={"minLength": 1, "maxLength": 64,
                                          "pattern": r"^\S(.*\S)?$"}),
    rule: Literal[RULES] | None = Query(
        None, description="learning rule (default: the profile's, else the service's)"),
    epochs: int | None = Query(None, ge=1, le=20),
    lr: float | None = Query(None, gt=0, le=0.1),
    lr_out: float | None = Query(None, gt=0, le=0.1),
    optimizer: Literal["adam", "sgd"] | None = Query(None),
    update_every: int | None = Query(None, ge=1, le=1000),
    contrast: Literal["classes", "batch"] | None = Query(None),
    readout: Literal["final", "frame"] | None = Query(None),
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
    if reserved_profile(profile):
        raise Problem("read-only-profile")
    authorize(request, profile, write=True)
    check_headers(request, s.max_upload_bytes)  # 415 / 413 before anything else
    if idempotency_key is not None:  # a retry: answer before reading the body
        done = await rt.io(rt.store.by_idempotency_key, profile, idempotency_key)
        if done is not None:
            return _replay(done, label)
    if rule is None:  # the profile's own rule, if it has one (a profile's rule never changes)
        try:
            rule = (await rt.io(rt.store.get_profile, profile)).rule
        except UnknownProfile:
            pass
    rule, hp = _hyperparameters(rt, rule, {
        "epochs": epochs, "lr": lr, "lr_out": lr_out, "optimizer": optimizer,
        "update_every": update_every, "contrast": contrast, "readout": readout})
    outcome = "error"
    try:
        async with rt.lock(profile):
            if idempotency_key is not None:  # a concurrent twin committed while we waited
                done = await rt.io(rt.store.by_idempotency_key, profile, idempotency_key)
                if done is not None:
                    outcome = "replayed"
                    return _replay(done, label)
            try:
                parent = await rt.io(rt.store.version, profile)
                create, keep_audio = False, (await rt.io(rt.store.get_profile, profile)
                                             ).store_audio
            except UnknownProfile:
                parent, create, keep_audio = rt.base_info, True, False
            # adaptation's own pool: it never occupies prediction's threads
            model = await rt.adapt_compute(rt.load, parent)
            job = await rt.adapt_compute(
                _Job, model, label, rule, hp, s.max_adapt_seconds, str(s.spool_dir),
                keep_audio, round(s.adapt_slice_seconds * 16_000), rt.gate.wait_idle)
            try:
                async for data in audio_chunks(request, s.max_upload_bytes,
                                               s.upload_idle_timeout_s, s.upload_timeout_s):
                    await rt.adapt_compute(job.feed, data)
                result, weights = await rt.adapt_compute(job.finish)
                tags = {}
                if job.raw is not None:  # opted in: keep the recording, named by content
                    dest = s.audio_dir / profile / f"{sha256(weights)[:16]}-{uuid.uuid4().hex}"
                    tags["audio"] = os.path.relpath(await rt.io(job.keep_raw, dest), s.data_dir)
                try:
                    info = await rt.write(
                        rt.store.commit_version, profile, parent.number, weights, rule, label,
                        result.hyperparameters, result.utterances,
                        list(job.session.model.labels),
                        {"prob_before": result.prob_before, "prob_after": result.prob_after,
                         "utterances": result.utterances, "new_label": result.new_label,
                         "audio_seconds": job.decoder.samples_out / 16_000},
                        tags=tags, create=create, idempotency_key=idempotency_key)
                except IdempotentReplay as exc:  # another process committed it first
                    if tags:
                        (s.data_dir / tags["audio"]).unlink(missing_ok=True)
                    outcome = "replayed"
                    return _replay(exc.info, label)
                except BaseException:
                    if tags:
                        (s.data_dir / tags["audio"]).unlink(missing_ok=True)
                    raise
            finally:
                job.abort()
        outcome = "ok"
    except ClientDisconnect:
        outcome = "disconnected"
        log.info("client went away during /adapt on %s; nothing committed", profile)
        return Response(status_code=400)
    finally:
        rt.metrics.inc("tracekws_adaptations_total", outcome=outcome)
    elapsed = time.perf_counter() - t0
    audio_s = job.decoder.samples_out / 16_000
    rt.metrics.inc("tracekws_adapt_utterances_total", result.utterances)
    rt.metrics.inc("tracekws_adapt_audio_seconds_total", audio_s)
    rt.metrics.observe("tracekws_adapt_duration_seconds", elapsed)
    body = {
        "profile": profile,
        "version": info.number,
        "parent": parent.number,
        "label": label,
        "new_label": result.new_label,
        "utterances": result.utterances,
        "prob_before": round(result.prob_before, 6),
        "prob_after": round(result.prob_after, 6),
        "rule": rule,
        "hyperparameters": result.hyperparameters,
        "sha256": sha256(weights),
        "audio_seconds": round(audio_s, 3),
        "latency_ms": round(elapsed * 1000, 3),
    }
    return JSONResponse(body, status_code=201,
                        headers={"Location": f"/profiles/{profile}/versions/{info.number}"})
