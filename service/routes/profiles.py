"""Profiles: list, create, show, delete; the detector settings (per-keyword thresholds,
refractory time) of the active version; its words of the user's own (list, change a word's
threshold, remove a word). ``default`` is the shipped model, read-only. A change of settings
or words makes a new version (the work: :class:`service.profiles.Profiles`)."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from tracekws.model.detect import MAX_REFRACTORY
from tracekws.model.words import MAX_THRESHOLD

from ..auth import authorize, visible
from ..deps import ProfilesDep, ReadableProfile, WritableProfile
from ..problems import Problem, responses
from ..settings import RULES
from ..validation import MAX_LABEL, PROFILE_PATTERN, WordPath

router = APIRouter(tags=["profiles"])


class NewProfile(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)  # "store_audio": 0 is not a bool
    name: str = Field(pattern=PROFILE_PATTERN, description="1-64 of [A-Za-z0-9._-]")
    store_audio: bool = Field(False, description="keep the raw audio of each /adapt upload")
    rule: Literal[RULES] | None = Field(
        None, description="learning rule of this profile's /adapt calls (default: the service's)")


@router.get("/profiles", summary="List profiles", responses=responses("list_profiles"))
async def list_profiles(request: Request, svc: ProfilesDep) -> JSONResponse:
    return JSONResponse({"profiles": [p for p in await svc.list()
                                      if visible(request, p["name"])]})


MAX_JSON = 64 * 1024


async def _json_bytes(request: Request, what: str) -> bytes:
    """The JSON body's bytes, read with a size cap (FastAPI's own body parsing has none)."""
    ctype = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if ctype.lower() != "application/json":
        raise Problem("unsupported-media-type", f"send the {what} as application/json")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_JSON:
        raise Problem("body-too-large", f"JSON bodies are limited to {MAX_JSON} bytes")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_JSON:
            raise Problem("body-too-large", f"JSON bodies are limited to {MAX_JSON} bytes")
    return bytes(data)


Body = TypeVar("Body", bound=BaseModel)


async def _json_body(request: Request, model: type[Body], what: str) -> Body:
    """The JSON body as ``model`` (strict types); 422 ``validation-error`` naming each bad
    field under ``body``."""
    try:
        return model.model_validate_json(await _json_bytes(request, what))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]) from None


def _version_made(body: dict[str, Any], created: bool, profile: str) -> JSONResponse:
    """The answer of a change that makes a new version: 201 with the version's ``Location``,
    or 200 when the active version already was so and nothing was made (a retried PUT)."""
    if not created:
        return JSONResponse(body)
    return JSONResponse(body, status_code=201, headers={
        "Location": f"/profiles/{profile}/versions/{body['version']}"})


@router.post("/profiles", status_code=201, summary="Create a profile from the shipped model",
             responses=responses("create_profile"),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": NewProfile.model_json_schema()}}}})
async def create_profile(request: Request, svc: ProfilesDep) -> JSONResponse:
    body = await _json_body(request, NewProfile, "profile")
    authorize(request, body.name, write=True)
    info = await svc.create(body.name, body.store_audio, body.rule)
    return JSONResponse(info.public(), status_code=201,
                        headers={"Location": f"/profiles/{body.name}"})


@router.get("/profiles/{profile}", summary="Show a profile", responses=responses("get_profile"))
async def get_profile(profile: ReadableProfile, svc: ProfilesDep) -> JSONResponse:
    return JSONResponse(await svc.get(profile))


@router.delete("/profiles/{profile}", status_code=204, summary="Delete a profile",
               responses=responses("delete_profile"))
async def delete_profile(profile: WritableProfile, svc: ProfilesDep) -> Response:
    await svc.delete(profile)
    return Response(status_code=204)


# The body of PUT /profiles/{p}/detector, for the schema only: the service checks it in one
# place (tracekws.model.detect.DetectorSettings.parse, against the active version's keywords).
DETECTOR_BODY: dict[str, Any] = {
    "title": "DetectorSettings",
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        "thresholds": {
            "type": "object",
            "description": "keyword → smoothed posterior it must exceed to be detected; "
                           "keywords of the active version only (not _unknown_ or "
                           "_silence_); a keyword not named uses the global threshold",
            "propertyNames": {"minLength": 1, "maxLength": MAX_LABEL},
            "additionalProperties": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        },
        "refractory": {"type": "number", "minimum": 0, "maximum": MAX_REFRACTORY,
                       "description": "seconds a detected keyword stays suppressed"},
    },
    "example": {"thresholds": {"yes": 0.7, "no": 0.6}, "refractory": 1.0},
}


@router.get("/profiles/{profile}/detector",
            summary="Detection thresholds and refractory time of the active version",
            responses=responses("get_detector"))
async def get_detector(profile: ReadableProfile, svc: ProfilesDep) -> JSONResponse:
    return JSONResponse(await svc.detector(profile))


@router.put("/profiles/{profile}/detector", status_code=201,
            summary="Set per-keyword thresholds and the refractory time (a new version)",
            responses={200: {"description": "The active version already has these settings: "
                             "no version is made (a retried PUT)"},
                       **responses("set_detector")},
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": DETECTOR_BODY}}}})
async def set_detector(request: Request, profile: WritableProfile, svc: ProfilesDep
                       ) -> JSONResponse:
    try:
        data = json.loads(await _json_bytes(request, "detector settings"))
    except ValueError:
        raise Problem("validation-error", "the body is not JSON") from None
    return _version_made(*await svc.set_detector(profile, data), profile)


# ---- words of the user's own (model/words.py; enrolled by /adapt) -------------------------
class WordThreshold(BaseModel):
    """The body of PUT /profiles/{p}/words/{word}."""

    model_config = ConfigDict(extra="forbid", strict=True)  # true is not a number
    threshold: float = Field(
        gt=0, le=MAX_THRESHOLD, allow_inf_nan=False,
        description="the ratio (distance to the word's recordings / distance to other words) "
                    "below which the word fires: lower is stricter (fewer false accepts, "
                    "more misses); `default_threshold` of GET .../words is the tuned default")


@router.get("/profiles/{profile}/words",
            summary="Words of the user's own of the active version, with their thresholds",
            responses=responses("list_words"))
async def list_words(profile: ReadableProfile, svc: ProfilesDep) -> JSONResponse:
    return JSONResponse(await svc.words(profile))


# {word:path}: a word may hold a "/" (an /adapt label may), sent as %2F, which a plain path
# parameter would not match (the route would be a 404 not-found instead of the word's own)
@router.put("/profiles/{profile}/words/{word:path}", status_code=201,
            summary="Set the threshold of a word of the user's own (a new version)",
            responses={201: {"description": "A new active version with this threshold "
                             "(`Location`); the body lists its words"},
                       200: {"description": "The word already has this threshold: no version "
                             "is made (a retried PUT)"},
                       **responses("set_word_threshold")},
            openapi_extra={"requestBody": {"required": True, "content": {
                "application/json": {"schema": {**WordThreshold.model_json_schema(),
                                                "example": {"threshold": 0.6}}}}}})
async def set_word_threshold(request: Request, profile: WritableProfile, word: WordPath,
                             svc: ProfilesDep) -> JSONResponse:
    body = await _json_body(request, WordThreshold, "threshold")
    return _version_made(*await svc.set_word_threshold(profile, word, body.threshold), profile)


@router.delete("/profiles/{profile}/words/{word:path}",
               summary="Remove a word of the user's own (a new version; older ones keep it)",
               responses={200: {"description": "The new active version, without the word; "
                                "the body lists its words"},
                          **responses("remove_word")})
async def remove_word(profile: WritableProfile, word: WordPath, svc: ProfilesDep
                      ) -> JSONResponse:
    return JSONResponse(await svc.remove_word(profile, word))
