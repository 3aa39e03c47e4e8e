"""Bearer API keys. With no keys configured the service is open (an appliance on a trusted
LAN); with keys, /adapt and every version change need one, reads and /predict need one when
``predict_requires_key`` is set, and a key may be limited to named profiles."""

from __future__ import annotations

import hmac

from starlette.requests import HTTPConnection

from .problems import Problem
from .settings import ApiKey, Settings

CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tracekws"'}


def _bearer(conn: HTTPConnection) -> str | None:
    header = conn.headers.get("authorization")
    if header:
        scheme, _, token = header.partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else ""
    if conn.scope["type"] == "websocket":
        # browsers cannot set headers on a WebSocket: the page sends the key in a first
        # {"type": "auth"} message (service.routes.stream); ?token= still works for older
        # clients, and is redacted from every log line (service.logfilter)
        return conn.query_params.get("token")
    return None


def needs_key(conn: HTTPConnection, write: bool) -> bool:
    settings: Settings = conn.app.state.runtime.settings
    return settings.auth_enabled and (write or settings.predict_requires_key)


def find_key(settings: Settings, token: str) -> ApiKey | None:
    found = None
    for k in settings.api_keys:  # compare against every key: no early exit timing signal
        if hmac.compare_digest(k.key.encode(), token.encode()):
            found = k
    return found


def authorize(conn: HTTPConnection, profile: str | None, write: bool,
              token: str | None = None) -> ApiKey | None:
    """Raise a 401/403 :class:`Problem` unless the request may use ``profile``
    (``token``: a key given otherwise than in a header, e.g. a WebSocket auth message)."""
    settings: Settings = conn.app.state.runtime.settings
    if not needs_key(conn, write):
        return None
    token = _bearer(conn) if token is None else token
    if token is None:
        raise Problem("unauthorized", "this request needs Authorization: Bearer <key>",
                      headers=CHALLENGE)
    key = find_key(settings, token)
    if key is None:
        raise Problem("unauthorized", "the API key is not valid",
                      headers={**CHALLENGE, "WWW-Authenticate":
                               'Bearer realm="tracekws", error="invalid_token"'})
    if profile is not None and not key.allows(profile):
        raise Problem("forbidden-profile", f"this API key may not use profile {profile!r}")
    return key


def visible(conn: HTTPConnection, profile: str) -> bool:
    """Whether a listing shows ``profile`` to this caller (keys limited to profiles)."""
    try:
        key = authorize(conn, None, write=False)
    except Problem:
        return False
    return key is None or key.allows(profile)
