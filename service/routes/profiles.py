"""Profiles: list, create, show, delete. ``default`` is the shipped model, read-only."""

from __future__ import annotations

import shutil
from typing import Literal

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..auth import authorize, visible
from ..problems import Problem, disk_full_reason, responses
from ..runtime import Runtime, runtime
from ..settings import DEFAULT_PROFILE, RULES
from ..validation import PROFILE_PATTERN, ProfilePath, reserved_profile

router = APIRouter(tags=["profiles"])


class NewProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "store_audio": 0 is not a bool
    name: str = Field(pattern=PROFILE_PATTERN, description="1-64 of [A-Za-z0-9._-]")
    store_audio: bool = Field(False, description="keep the raw audio of each /adapt upload")
    rule: Literal[RULES] | None = Field(
        None, description="learning rule of this profile's /adapt calls (default: the service's)")


def default_profile(rt: Runtime) -> dict:
    return {"name": DEFAULT_PROFILE, "created_at": rt.base_info.created_at.isoformat(),
            "store_audio": False, "active_version": 1, "versions": 1, "rule": None,
            "read_only": True}


@router.get("/profiles", summary="List profiles", responses=responses("list_profiles"))
async def list_profiles(request: Request) -> JSONResponse:
    rt = runtime(request)
    profiles = [default_profile(rt)] + [p.public() for p in await rt.io(rt.store.list_profiles)]
    return JSONResponse({"profiles": [p for p in profiles if visible(request, p["name"])]})


MAX_JSON = 64 * 1024


async def _json_body(request: Request) -> NewProfile:
    """The JSON body, read with a size cap (FastAPI's own body parsing has none)."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if ctype.lower() != "application/json":
        raise Problem("unsupported-media-type", "send the profile as application/json")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_JSON:
        raise Problem("body-too-large", f"JSON bodies are limited to {MAX_JSON} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON:
            raise Problem("body-too-large", f"JSON bodies are limited to {MAX_JSON} bytes")
    try:
        return NewProfile.model_validate_json(bytes(data))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None


@router.post("/profiles", status_code=201, summary="Create a profile from the shipped model",
             responses=responses("create_profile"),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": NewProfile.model_json_schema()}}}})
async def create_profile(request: Request) -> JSONResponse:
    rt = runtime(request)
    body = await _json_body(request)
    authorize(request, body.name, write=True)
    if reserved_profile(body.name):  # in every case form
        raise Problem("profile-exists", f"{body.name!r} is reserved: 'default' is the "
                      "built-in profile")
    info = await rt.write(rt.store.create_profile, body.name, body.store_audio, body.rule)
    return JSONResponse(info.public(), status_code=201,
                        headers={"Location": f"/profiles/{body.name}"})


@router.get("/profiles/{profile}", summary="Show a profile", responses=responses("get_profile"))
async def get_profile(request: Request, profile: ProfilePath) -> JSONResponse:
    rt = runtime(request)
    authorize(request, profile, write=False)
    if profile == DEFAULT_PROFILE:
        return JSONResponse(default_profile(rt))
    return JSONResponse((await rt.io(rt.store.get_profile, profile)).public())


@router.delete("/profiles/{profile}", status_code=204, summary="Delete a profile",
               responses=responses("delete_profile"))
async def delete_profile(request: Request, profile: ProfilePath) -> Response:
    rt = runtime(request)
    if profile == DEFAULT_PROFILE:
        raise Problem("read-only-profile")
    authorize(request, profile, write=True)
    async with rt.lock(profile):
        audio = rt.settings.audio_dir / profile
        try:
            await rt.write(rt.store.delete_profile, profile)
        except Exception as exc:
            if disk_full_reason(exc) is None:
                raise
            # deleting is how space is freed, so it must work on a full disk: drop the
            # profile's recordings and stale spool files first, then delete the rows again
            await rt.io(shutil.rmtree, audio, True)
            await rt.io(_clear_spool, rt.settings.spool_dir)
            await rt.write(rt.store.delete_profile, profile)
        if audio.is_dir():
            await rt.io(shutil.rmtree, audio, True)
    return Response(status_code=204)


def _clear_spool(spool) -> None:
    """Spool files no request holds open any more (orphans of killed requests)."""
    import time

    for f in spool.glob("*"):
        try:
            if f.is_file() and time.time() - f.stat().st_mtime > 600:
                f.unlink(missing_ok=True)
        except OSError:
            pass
