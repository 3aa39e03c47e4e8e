"""POST /predict: audio → labels with probabilities, from one consistent model version."""

from __future__ import annotations

import time

import anyio
import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from ..auth import authorize
from ..decoding import BoundedDecoder
from ..deps import ProfilesDep
from ..problems import responses
from ..runtime import runtime
from ..settings import DEFAULT_PROFILE
from ..upload import AUDIO_BODY, audio_chunks, check_headers
from ..validation import ProfileQuery

router = APIRouter(tags=["predict"])


async def decode_body(request: Request, rt, min_samples: int):
    """The body decoded as it arrives (never buffered whole), within the sample budget of
    ``MAX_PREDICT_SECONDS`` and one of ``MAX_CONCURRENT_DECODES`` slots."""
    s = rt.settings
    await rt.decode_slot_acquire()
    dec = BoundedDecoder(s.max_predict_seconds, str(s.spool_dir))
    try:
        async for data in audio_chunks(request, s.max_upload_bytes, s.upload_idle_timeout_s,
                                       s.upload_timeout_s):
            await anyio.to_thread.run_sync(dec.feed, data)
        return await anyio.to_thread.run_sync(dec.close, min_samples)
    finally:
        dec.abort()
        rt.decode_slots.release()


@router.post("/predict", summary="Classify an audio clip", responses=responses("predict"),
             openapi_extra={"requestBody": AUDIO_BODY})
async def predict(
    request: Request,
    svc: ProfilesDep,
    profile: ProfileQuery = DEFAULT_PROFILE,
    version: int | None = Query(None, ge=1, le=2**31 - 1),
) -> JSONResponse:
    t0 = time.perf_counter()
    rt = runtime(request)
    authorize(request, profile, write=False)
    check_headers(request, rt.settings.max_upload_bytes)
    resolved = await rt.io(svc.resolve, profile, version)  # 404 before the body is read
    wave = await decode_body(request, rt, resolved.model.config.frontend.n_fft)
    scores = await rt.batcher.predict(resolved.model, wave)  # batched with concurrent calls
    rt.metrics.inc("tracekws_predictions_total")
    body = {
        "label": scores[0][0],
        "scores": [{"label": lab, "probability": round(p, 6)} for lab, p in scores],
        "profile": profile,
        "version": resolved.info.number,
        "latency_ms": round((time.perf_counter() - t0) * 1000, 3),
    }
    if resolved.fallback_from is not None:
        body["fallback_from"] = resolved.fallback_from
        body["warning"] = (f"version {resolved.fallback_from} is corrupt; serving version "
                           f"{resolved.info.number}, the last good one")
    return JSONResponse(body)
