"""Versions of a profile (MLflow-style): list, show, activate (rollback), export weights."""

from __future__ import annotations

import base64

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from ..deps import ProfilesDep, ReadableProfile, WritableProfile
from ..problems import responses
from ..validation import VersionPath

router = APIRouter(tags=["versions"])


@router.get("/profiles/{profile}/versions", summary="List a profile's versions",
            responses=responses("list_versions"))
async def list_versions(profile: ReadableProfile, svc: ProfilesDep) -> JSONResponse:
    versions, active = await svc.versions(profile)
    return JSONResponse({"profile": profile, "active_version": active,
                         "versions": [v.public(active) for v in versions]})


@router.get("/profiles/{profile}/versions/{version}", summary="Show one version",
            responses=responses("get_version"))
async def get_version(profile: ReadableProfile, version: VersionPath, svc: ProfilesDep
                      ) -> JSONResponse:
    info, active = await svc.version(profile, version)
    return JSONResponse(info.public(active))


@router.post("/profiles/{profile}/versions/{version}/activate",
             summary="Make a version the active one (rollback)", responses=responses("activate"))
async def activate(profile: WritableProfile, version: VersionPath, svc: ProfilesDep
                   ) -> JSONResponse:
    previous, info = await svc.activate(profile, version)
    return JSONResponse({"profile": profile, "active_version": info.number,
                         "previous_version": previous, "sha256": info.sha256})


@router.get("/profiles/{profile}/versions/{version}/weights",
            summary="Export a version's weights (safetensors)",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {}}},
                       **responses("export_weights")})
async def export_weights(profile: ReadableProfile, version: VersionPath, svc: ProfilesDep
                         ) -> Response:
    info, _ = await svc.version(profile, version)
    data = await svc.weights(info)
    digest = base64.b64encode(bytes.fromhex(info.sha256)).decode()
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{profile}-v{version}.safetensors"',
        "ETag": f'"{info.sha256}"',
        "Repr-Digest": f"sha-256=:{digest}:",
        "X-Weights-SHA256": info.sha256,
    })
