"""Cross-site request refusal (CSRF) for every state-changing request, keys or no keys.

In the default no-key mode any web page a user visits could otherwise POST to the service
on their LAN (an HTML form or a ``no-cors`` fetch needs no permission). Browsers mark such
requests: ``Origin`` on every cross-origin POST/PUT/PATCH/DELETE and on WebSocket handshakes,
``Sec-Fetch-Site: cross-site`` on modern ones. This middleware refuses (403 ``cross-origin``):

- a state-changing request or WebSocket handshake whose ``Origin`` is ``null`` or neither
  the service's own host (the ``Host`` header, default ports normalised) nor one of
  ``ALLOWED_ORIGINS``;
- one without ``Origin`` that says ``Sec-Fetch-Site: cross-site``.

Clients that are not browsers (curl, httpx, the CLI) send neither header and pass. A
state-changing request with a body must also declare a JSON, audio or multipart
``Content-Type`` (else 415): the bodies an HTML form can send without a CORS preflight are
``text/plain`` and ``application/x-www-form-urlencoded``, neither of which is accepted.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .problems import Problem, problem_response
from .upload import AUDIO_TYPES, MULTIPART

UNSAFE = {"POST", "PUT", "PATCH", "DELETE"}
BODY_TYPES = AUDIO_TYPES | {MULTIPART, "application/json"}
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def normalise_origin(origin: str) -> str | None:
    """``scheme://host:port`` (lowercase, explicit port) or None if it is not an origin."""
    try:
        u = urlsplit(origin.strip())
        port = u.port or DEFAULT_PORTS.get(u.scheme.lower())
    except ValueError:
        return None
    if not u.scheme or not u.hostname or port is None or u.path not in ("", "/") \
            or u.query or u.fragment or u.username or u.password:
        return None
    return f"{u.scheme.lower()}://{u.hostname.lower()}:{port}"


def _host_port(host: str, scheme: str) -> str | None:
    try:
        u = urlsplit(f"//{host.strip()}")
        port = u.port or DEFAULT_PORTS.get(scheme)
    except ValueError:
        return None
    return f"{(u.hostname or '').lower()}:{port}" if u.hostname else None


def same_host(origin: str, host: str | None) -> bool:
    """Whether ``origin`` names the host the request was sent to (its ``Host`` header)."""
    norm = normalise_origin(origin)
    if norm is None or not host:
        return False
    scheme, _, netloc = norm.partition("://")
    return netloc == _host_port(host, scheme)


class CrossOriginMiddleware:
    def __init__(self, app: ASGIApp, allowed_origins: list[str]) -> None:
        self.app = app
        self.allowed = {o for o in (normalise_origin(x) for x in allowed_origins) if o}

    def refusal(self, scope: Scope) -> str | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        if origin is not None:
            if origin.strip().lower() == "null":
                return "requests from an opaque origin (Origin: null) are refused"
            if same_host(origin, headers.get("host")) or normalise_origin(origin) in self.allowed:
                return None
            return (f"Origin {origin!r} is not this service's origin nor one of "
                    "TRACEKWS_ALLOWED_ORIGINS")
        if headers.get("sec-fetch-site", "").lower() == "cross-site":
            return "cross-site requests (Sec-Fetch-Site: cross-site) are refused"
        return None

    @staticmethod
    def content_type_problem(scope: Scope) -> Problem | None:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        length = headers.get("content-length", "").strip()
        has_body = "transfer-encoding" in headers or (length not in ("", "0"))
        ctype = headers.get("content-type")
        if ctype is None:
            if has_body:
                return Problem("unsupported-media-type",
                               "a request body needs a Content-Type (application/json, an "
                               "audio type or multipart/form-data)")
            return None
        media = ctype.split(";", 1)[0].strip().lower()
        if media not in BODY_TYPES:
            return Problem("unsupported-media-type",
                           f"Content-Type {media!r} is not accepted here")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket" or (kind == "http" and scope["method"] in UNSAFE):
            why = self.refusal(scope)
            if why is not None:
                if kind == "websocket":  # before accept: the handshake is answered 403
                    await send({"type": "websocket.close", "code": 1008,
                                "reason": "cross-origin"})
                    return
                await problem_response(Problem("cross-origin", why), Request(scope))(
                    scope, receive, send)
                return
            if kind == "http":
                p = self.content_type_problem(scope)
                if p is not None:
                    await problem_response(p, Request(scope))(scope, receive, send)
                    return
        await self.app(scope, receive, send)
