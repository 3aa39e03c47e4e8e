"""POST /predict: audio → labels with probabilities, from one consistent model version."""

from __future__ import annotations

import time

import torch
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from model.audio import AudioError
from model.pipeline import KWSModel
from model.stream_decode import StreamDecoder

from ..auth import authorize
from ..runtime import runtime
from ..settings import DEFAULT_PROFILE
from ..upload import audio_chunks, check_headers
from ..validation import ProfileQuery

router = APIRouter(tags=["predict"])


def decode(data: bytes, model: KWSModel, max_seconds: float, spool_dir: str) -> torch.Tensor:
    dec = StreamDecoder(max_seconds=max_seconds, spool_dir=spool_dir)
    wave = torch.cat([dec.feed(data), dec.close()])
    n_fft = model.config.frontend.n_fft
    if wave.numel() < n_fft:
        raise AudioError(f"the audio is shorter than one {n_fft / 16:g} ms frame", "too-short")
    return wave


@router.post("/predict", summary="Classify an audio clip")
async def predict(
    request: Request,
    profile: ProfileQuery = DEFAULT_PROFILE,
    version: int | None = Query(None, ge=1, le=2**31 - 1),
) -> JSONResponse:
    t0 = time.perf_counter()
    rt = runtime(request)
    authorize(request, profile, write=False)
    check_headers(request, rt.settings.max_upload_bytes)
    resolved = await rt.io(rt.resolve, profile, version)  # 404 before the body is read
    parts = [c async for c in audio_chunks(request, rt.settings.max_upload_bytes,
                                           rt.settings.upload_idle_timeout_s,
                                           rt.settings.upload_timeout_s)]
    wave = await rt.compute(decode, b"".join(parts), resolved.model,
                            rt.settings.max_predict_seconds, str(rt.settings.spool_dir))
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
