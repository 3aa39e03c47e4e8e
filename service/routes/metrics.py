"""GET /metrics in the Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse

from ..problems import responses
from ..runtime import runtime

router = APIRouter(tags=["metrics"])


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse,
            responses=responses("metrics"))
async def metrics(request: Request) -> PlainTextResponse:
    rt = runtime(request)
    rt.metrics.set("tracekws_model_cache_entries", len(rt.cache))
    return PlainTextResponse(rt.metrics.render(),
                             media_type="text/plain; version=0.0.4; charset=utf-8")
