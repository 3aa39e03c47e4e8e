"""RFC 9457 problem details for every error the service returns.

Handlers turn :class:`Problem`, starlette/FastAPI HTTP errors (404, 405...), request validation
errors and audio errors into ``application/problem+json``. Bad input is always a 4xx; an
unexpected exception is a 500 with no internals in the body (the traceback goes to the log).
Each ``type`` is a relative URI that resolves to ``GET /problems/{code}``, which describes it.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from tracekws.model.audio import AudioError

log = logging.getLogger("tracekws.service")
MEDIA_TYPE = "application/problem+json"

# code -> (status, title, description)
TYPES: dict[str, tuple[int, str, str]] = {
    "not-found": (404, "Not Found", "No such route or resource."),
    "unknown-profile": (404, "Unknown profile", "The profile does not exist."),
    "unknown-version": (404, "Unknown version", "The profile has no such version."),
    "unknown-word": (404, "Unknown word", "The profile's active version has no such word of "
                     "the user's own (enrolled by /adapt with a label the model's classes "
                     "lack)."),
    "method-not-allowed": (405, "Method Not Allowed", "The route does not take this method."),
    "validation-error": (422, "Invalid request", "A query, path or body parameter is invalid; "
                         "see `errors`."),
    "invalid-label": (422, "Invalid label", "Labels are 1-64 characters, without control "
                      "characters or surrounding whitespace."),
    "unsupported-media-type": (415, "Unsupported media type", "Send audio as audio/wav, "
                               "audio/flac, audio/ogg, application/octet-stream, or "
                               "multipart/form-data with a `file` field."),
    "missing-file": (422, "Missing file", "A multipart body needs a `file` field."),
    "bad-multipart": (400, "Malformed multipart body", "The multipart body cannot be parsed."),
    "body-too-large": (413, "Body too large", "The request body exceeds the upload limit."),
    "audio-too-long": (413, "Audio too long", "The audio exceeds the duration limit."),
    "upload-timeout": (408, "Upload stalled", "No body bytes arrived for too long."),
    "stream-idle": (408, "Stream idle", "The WebSocket received no message for "
                    "TRACEKWS_STREAM_IDLE_TIMEOUT_S seconds and was closed."),
    "empty-audio": (422, "Empty audio", "The body holds no audio samples."),
    "not-audio": (422, "Not audio", "The body is not a readable WAV, FLAC or OGG file."),
    "truncated-audio": (422, "Truncated audio", "The audio file ends before its header says."),
    "non-finite-audio": (422, "Non-finite audio", "The audio holds NaN or infinite samples."),
    "bad-rate": (422, "Unsupported sample rate", "Sample rates from 8 to 48 kHz are accepted."),
    "too-short": (422, "Audio too short", "The audio is shorter than one analysis frame."),
    "no-speech": (422, "No speech", "No utterance was found in the recording."),
    "bad-audio": (422, "Bad audio", "The audio cannot be used."),
    "unauthorized": (401, "Unauthorized", "Send `Authorization: Bearer <key>` with a valid "
                     "API key."),
    "forbidden-profile": (403, "Forbidden", "This API key is not allowed to use this profile."),
    "cross-origin": (403, "Cross-origin request", "A state-changing request or WebSocket "
                     "from another web origin (its `Origin` is not this service nor one of "
                     "TRACEKWS_ALLOWED_ORIGINS, or `Sec-Fetch-Site: cross-site`)."),
    "read-only-profile": (403, "Read-only profile", "The built-in profile `default` is the "
                          "shipped model and cannot be changed."),
    "profile-exists": (409, "Profile exists", "A profile with this name already exists."),
    "version-conflict": (409, "Version conflict", "The profile's active version changed while "
                         "this adaptation ran; retry it."),
    "idempotency-key-reused": (422, "Idempotency key reused", "This Idempotency-Key already "
                               "made a version of this profile for another label."),
    "corrupt-weights": (409, "Corrupt weights", "The stored weights of this version fail "
                        "their sha256 check; it cannot be used. The profile keeps serving its "
                        "last good version."),
    "busy": (503, "Busy", "Every audio decode slot is taken; retry after `Retry-After` "
             "seconds."),
    "insufficient-storage": (507, "Insufficient storage", "The disk (or database) is full; "
                             "nothing was saved. Deleting a profile frees space."),
    "quota-exceeded": (507, "Quota exceeded", "A storage quota (TRACEKWS_MAX_PROFILES, "
                       "TRACEKWS_MAX_VERSIONS_PER_PROFILE or TRACEKWS_MAX_STORAGE_BYTES) "
                       "would be exceeded; nothing was saved (`quota`, `limit` say which). "
                       "Deleting a profile frees space."),
    "not-ready": (503, "Not ready", "The service is starting or its database is unavailable."),
    "http-error": (400, "Bad request", "The request is malformed."),
    "internal-error": (500, "Internal error", "An unexpected error; it has been logged."),
}


# ---- OpenAPI: what each status means, as problem+json (routes pick theirs) ----------------
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; `code` names the problem, `type` resolves to "
                   "GET /problems/{code}.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "/problems/{code}"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "instance": {"type": "string", "description": "the request path"},
        "code": {"type": "string", "enum": sorted(TYPES)},
        "errors": {"type": "array", "description": "validation errors (422)",
                   "items": {"type": "object"}},
    },
}

STATUS_DOCS: dict[int, str] = {
    400: "Malformed request (`bad-multipart`, a Content-Length that is not a number)",
    401: "An API key is needed or is not valid (`unauthorized`; `WWW-Authenticate` says "
         "which)",
    403: "`forbidden-profile` (the key may not use this profile), `read-only-profile` "
         "(`default`), `cross-origin` (a write from another web origin)",
    404: "`unknown-profile`, `unknown-version`, `unknown-word` or `not-found`",
    408: "`upload-timeout`: the body stalled (UPLOAD_IDLE_TIMEOUT_S) or took too long",
    409: "`profile-exists`, `version-conflict` or `corrupt-weights`",
    413: "`body-too-large` or `audio-too-long`",
    415: "`unsupported-media-type`: a body without an accepted Content-Type",
    422: "Invalid parameters, label or audio (`validation-error`, `invalid-label`, "
         "`not-audio`, `empty-audio`, `truncated-audio`, `non-finite-audio`, `bad-rate`, "
         "`too-short`, `no-speech`, `missing-file`, `idempotency-key-reused`)",
    500: "`internal-error`: a bug; logged, no internals in the body",
    503: "`busy` (every decode slot taken; `Retry-After`) or `not-ready`",
    507: "`insufficient-storage` (the disk or database is full) or `quota-exceeded` (a "
         "profile, version or storage quota); nothing was saved",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    503: {"Retry-After": {"schema": {"type": "string"}, "description": "seconds (`busy`)"}},
}
PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
# every route's error statuses, in one place (the unsafe methods add 403 cross-origin and 415)
AUTH = (401, 403)
WRITE = (401, 403, 415, 507)
ROUTE_ERRORS: dict[str, tuple[int, ...]] = {
    "predict": (400, *AUTH, 404, 408, 409, 413, 415, 422, 503, 507),
    "adapt": (400, *WRITE, 404, 408, 409, 413, 422),
    "list_profiles": (),
    "create_profile": (*WRITE, 409, 413, 422),
    "get_profile": (*AUTH, 404, 422),
    "delete_profile": (*WRITE, 404, 422),
    "get_detector": (*AUTH, 404, 409, 422),
    "set_detector": (*WRITE, 404, 409, 413, 422),
    "list_words": (*AUTH, 404, 409, 422),
    "set_word_threshold": (*WRITE, 404, 409, 413, 422),
    "remove_word": (*WRITE, 404, 409, 422),
    "list_versions": (*AUTH, 404, 422),
    "get_version": (*AUTH, 404, 422),
    "activate": (*WRITE, 404, 409, 422),
    "export_weights": (*AUTH, 404, 409, 422),
    "healthz": (),
    "readyz": (503,),
    "metrics": (),
}


def responses(route: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI ``responses`` of a route's errors: each status as problem+json (500 on
    every route)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*ROUTE_ERRORS[route], 500}):
        r: dict[str, Any] = {"description": STATUS_DOCS[status],
                             "content": {MEDIA_TYPE: {"schema": PROBLEM_REF}}}
        if status in _HEADERS:
            r["headers"] = _HEADERS[status]
        out[status] = r
    return out


class Problem(Exception):
    """An error to answer as problem+json. ``code`` picks status and title from TYPES."""

    def __init__(self, code: str, detail: str | None = None, status: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        st, title, desc = TYPES.get(code, (status or 400, HTTPStatus(status or 400).phrase, ""))
        super().__init__(detail or desc)
        self.code, self.status, self.title = code, status or st, title
        self.detail = detail or desc
        self.headers = headers or {}
        self.extra = extra


def problem_body(code: str, status: int, title: str, detail: str, instance: str | None,
                 **extra: Any) -> dict[str, Any]:
    body = {"type": f"/problems/{code}", "title": title, "status": status, "detail": detail,
            "code": code}
    if instance:
        body["instance"] = instance
    body.update(extra)
    return body


def problem_response(p: Problem, request: Request | None = None) -> JSONResponse:
    instance = request.url.path if request is not None else None
    return JSONResponse(problem_body(p.code, p.status, p.title, p.detail, instance, **p.extra),
                        status_code=p.status, headers=p.headers, media_type=MEDIA_TYPE)


def audio_problem(exc: AudioError) -> Problem:
    code = {"too-long": "audio-too-long"}.get(exc.code, exc.code)
    if code not in TYPES:
        code = "bad-audio"
    return Problem(code, str(exc))


def store_problem(exc: Exception) -> Problem:
    """The problem a store error is (``exc`` re-raised if it is not one)."""
    from .store import (
        CorruptWeights,
        ProfileExists,
        QuotaExceeded,
        UnknownProfile,
        UnknownVersion,
        VersionConflict,
    )

    if isinstance(exc, UnknownProfile):
        return Problem("unknown-profile", f"no profile {exc.args[0]!r}")
    if isinstance(exc, UnknownVersion):
        return Problem("unknown-version", str(exc))
    if isinstance(exc, ProfileExists):
        return Problem("profile-exists", f"profile {exc.args[0]!r} already exists")
    if isinstance(exc, VersionConflict):
        return Problem("version-conflict", str(exc))
    if isinstance(exc, CorruptWeights):
        return Problem("corrupt-weights", str(exc))
    if isinstance(exc, QuotaExceeded):
        return Problem("quota-exceeded", str(exc), quota=exc.quota, limit=exc.limit)
    raise exc


def disk_full_reason(exc: BaseException | None) -> str | None:
    """Why ``exc`` (or what it wraps) means the disk or database is full, else None:
    OSError ENOSPC/EDQUOT, SQLite's SQLITE_FULL ("database or disk is full"), PostgreSQL's
    53100 disk_full."""
    import errno

    seen = 0
    while exc is not None and seen < 8:
        seen += 1
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"{errno.errorcode[exc.errno]}: {exc.strerror or 'no space left on device'}"
        if getattr(exc, "sqlite_errorcode", None) == 13 or "database or disk is full" in str(exc):
            return "the database or disk is full"
        if getattr(exc, "pgcode", None) == "53100" or type(exc).__name__ == "DiskFull":
            return "the database server's disk is full"
        exc = getattr(exc, "orig", None) or exc.__cause__ or exc.__context__
    return None


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app takes on this path (for a 405's ``Allow``)."""
    from starlette.routing import Match

    def walk(routes):  # FastAPI >= 0.16x wraps included routers (no prefixes here)
        for r in routes:
            inner = getattr(r, "original_router", None)
            yield from (walk(inner.routes) if inner is not None else (r,))

    scope = {**request.scope, "type": "http"}
    methods: set[str] = set()
    for route in walk(request.app.router.routes):
        match, _ = route.matches(scope)
        if match != Match.NONE and getattr(route, "methods", None):
            methods |= set(route.methods)
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return sorted(methods, key=lambda m: (order.index(m) if m in order else len(order), m))


def _jsonable_errors(errors: list[dict]) -> list[dict]:
    out = []
    for e in errors:
        out.append({"loc": [str(x) for x in e.get("loc", ())], "msg": str(e.get("msg", "")),
                    "type": str(e.get("type", ""))})
    return out


def install(app: FastAPI) -> None:
    """Register the handlers and the ``/problems/{code}`` descriptions: the one place that
    maps exceptions to HTTP responses."""
    from starlette.requests import ClientDisconnect

    from .store import StoreError

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc, request)

    @app.exception_handler(StoreError)
    async def _store(request: Request, exc: StoreError) -> JSONResponse:
        return problem_response(store_problem(exc), request)

    @app.exception_handler(ClientDisconnect)
    async def _gone(request: Request, exc: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody is listening; just end the request quietly

    @app.exception_handler(AudioError)
    async def _audio(request: Request, exc: AudioError) -> JSONResponse:
        return problem_response(audio_problem(exc), request)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _jsonable_errors(list(exc.errors()))
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors) or "invalid"
        return problem_response(Problem("validation-error", detail, errors=errors), request)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http-error")
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # starlette names only the first route's methods
            headers["Allow"] = ", ".join(allowed_methods(request))
            detail = f"{request.method} is not allowed here; use {headers['Allow']}"
        p = Problem(code, detail, status=exc.status_code, headers=headers)
        p.title = HTTPStatus(exc.status_code).phrase
        return problem_response(p, request)

    async def _storage(request: Request, exc: Exception) -> JSONResponse:
        """OS and database errors: 507 when the disk is full, else the generic 500."""
        full = disk_full_reason(exc)
        if full is None:
            return await _unexpected(request, exc)
        # not a bug: the disk is full; /readyz says so until a write works
        rt = getattr(request.app.state, "runtime", None)
        if rt is not None:
            rt.storage_full(full)
        log.error("write failed, storage full: %s %s: %s", request.method, request.url.path,
                  full)
        return problem_response(Problem("insufficient-storage", f"nothing was saved: {full}"),
                                request)

    from sqlalchemy.exc import DBAPIError

    app.add_exception_handler(OSError, _storage)
    app.add_exception_handler(DBAPIError, _storage)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(Problem("internal-error"), request)

    @app.get("/problems/{code}", include_in_schema=False)
    async def describe(code: str) -> JSONResponse:
        if code not in TYPES:
            raise Problem("not-found", f"no problem type {code!r}")
        status, title, desc = TYPES[code]
        return JSONResponse({"type": f"/problems/{code}", "title": title, "status": status,
                             "description": desc})
