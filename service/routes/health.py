"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from .. import db
from ..problems import Problem, responses
from ..runtime import runtime

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers", responses=responses("healthz"))
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


@router.get("/readyz", summary="Readiness: model loaded, database reachable, schema current",
            responses=responses("readyz"))
async def readyz(request: Request) -> JSONResponse:
    rt = getattr(request.app.state, "runtime", None)
    if rt is None or not rt.ready:
        raise Problem("not-ready", "the service is starting")
    rt = runtime(request)

    def _check() -> str | None:
        with rt.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return db.current_revision(rt.engine)

    try:
        revision = await rt.io(_check)
    except Exception as exc:
        raise Problem("not-ready", f"database unavailable ({type(exc).__name__})") from exc
    if rt.storage_error is not None:
        raise Problem("not-ready", f"storage full ({rt.storage_error}); it clears when a "
                      "write succeeds (deleting a profile frees space)", reason="storage-full")
    if revision != rt.schema:
        raise Problem("not-ready", f"database schema {revision} is not {rt.schema}")
    return JSONResponse({"status": "ready", "schema": revision,
                         "model_sha256": rt.base_sha, "labels": rt.base_model.labels,
                         "database": rt.engine.dialect.name})
