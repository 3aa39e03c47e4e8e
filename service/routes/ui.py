"""The web page: ``GET /`` and its files under ``/static/`` (plain HTML/JS/CSS, no build).

The page holds no data of its own, so it needs no API key; it calls the API from the
browser with the key the user enters (kept in the tab's sessionStorage).
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from ..problems import Problem

router = APIRouter(include_in_schema=False)
STATIC = Path(__file__).resolve().parent.parent / "static"

# Same-origin only: no inline script or style, no third-party anything. Recordings are
# previewed from blob: URLs; the WebSocket goes back to the page's own host.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "media-src 'self' blob:; connect-src 'self' ws: wss:; object-src 'none'; "
       "base-uri 'none'; frame-ancestors 'none'; form-action 'none'")
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Content-Security-Policy": CSP}
TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html",
         ".svg": "image/svg+xml", ".png": "image/png", ".ico": "image/x-icon"}


def _file(path: Path) -> FileResponse:
    media = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0]
    return FileResponse(path, media_type=media or "application/octet-stream", headers=HEADERS)


@router.get("/")
async def index() -> FileResponse:
    return _file(STATIC / "index.html")


@router.get("/static/{name:path}")
async def static(name: str) -> FileResponse:
    try:  # a NUL byte (/static/a%00b) or an unrepresentable name is simply not a file
        path = (STATIC / name).resolve()
        found = "\x00" not in name and path.is_relative_to(STATIC) and path.is_file()
    except (ValueError, OSError):
        found = False
    if not found:
        raise Problem("not-found", f"no static file {name!r}")
    return _file(path)
