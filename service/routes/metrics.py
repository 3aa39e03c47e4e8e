"""GET /metrics: the app's Prometheus registry (service/metrics.py), in the classic text
format, or OpenMetrics when the scraper's ``Accept`` asks for it (as Prometheus does)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..problems import responses
from ..runtime import runtime

router = APIRouter(tags=["metrics"])

_TEXT = {"schema": {"type": "string"}}
_OK = {"description": "Prometheus text format 0.0.4, or OpenMetrics 1.0 when accepted.",
       "content": {"text/plain": _TEXT, "application/openmetrics-text": _TEXT}}


@router.get("/metrics", summary="Prometheus metrics", response_class=Response,
            responses={200: _OK, **responses("metrics")})
async def metrics(request: Request) -> Response:
    rt = runtime(request)
    rt.metrics.set("tracekws_model_cache_entries", len(rt.cache))
    body, content_type = rt.metrics.exposition(request.headers.get("accept"))
    return Response(body, media_type=content_type)
