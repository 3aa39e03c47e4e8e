"""Versions of a profile (MLflow-style): list, show, activate (rollback), export weights."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from ..auth import authorize
from ..problems import Problem, responses
from ..runtime import runtime
from ..settings import DEFAULT_PROFILE
from ..validation import ProfilePath, VersionPath

router = APIRouter(tags=["versions"])


@router.get("/profiles/{profile}/versions", summary="List a profile's versions",
            responses=responses("list_versions"))
async def list_versions(request: Request, profile: ProfilePath) -> JSONResponse:
    rt = runtime(request)
    authorize(request, profile, write=False)
    if profile == DEFAULT_PROFILE:
        versions, active = [rt.base_info], 1
    else:
        versions, active = await rt.io(rt.store.versions, profile)
    return JSONResponse({"profile": profile, "active_version": active,
                         "versions": [v.public(active) for v in versions]})


@router.get("/profiles/{profile}/versions/{version}", summary="Show one version",
            responses=responses("get_version"))
async def get_version(request: Request, profile: ProfilePath, version: VersionPath
                      ) -> JSONResponse:
    rt = runtime(request)
    authorize(request, profile, write=False)
    info = await rt.io(rt.version_info, profile, version)
    active = 1 if profile == DEFAULT_PROFILE else (await rt.io(rt.version_info, profile)).number
    return JSONResponse(info.public(active))


@router.post("/profiles/{profile}/versions/{version}/activate",
             summary="Make a version the active one (rollback)", responses=responses("activate"))
async def activate(request: Request, profile: ProfilePath, version: VersionPath) -> JSONResponse:
    rt = runtime(request)
    if profile == DEFAULT_PROFILE:
        raise Problem("read-only-profile")
    authorize(request, profile, write=True)
    previous, info = await rt.write(rt.store.activate, profile, version)
    return JSONResponse({"profile": profile, "active_version": info.number,
                         "previous_version": previous, "sha256": info.sha256})


@router.get("/profiles/{profile}/versions/{version}/weights",
            summary="Export a version's weights (safetensors)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}},
                       **responses("export_weights")})
async def export_weights(request: Request, profile: ProfilePath, version: VersionPath
                         ) -> Response:
    rt = runtime(request)
    authorize(request, profile, write=False)
    info = await rt.io(rt.version_info, profile, version)
    if profile == DEFAULT_PROFILE:
        data = rt.base_bytes
    else:
        try:
            data = await rt.io(rt.store.weights, info)
        except Exception:
            rt.metrics.inc("tracekws_corrupt_weights_total")
            raise
    digest = base64.b64encode(bytes.fromhex(info.sha256)).decode()
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{profile}-v{version}.safetensors"',
        "ETag": f'"{info.sha256}"',
        "Repr-Digest": f"sha-256=:{digest}:",
        "X-Weights-SHA256": info.sha256,
    })
