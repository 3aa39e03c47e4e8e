"""GET /docs: Swagger UI served from files installed with a PyPI package, never a CDN.

The assets (Swagger UI 5, which renders OpenAPI 3.1) come from the ``fastapi-offline``
package's ``static/`` folder; the page itself and its start-up script are ours, so the
Content-Security-Policy can forbid every other origin and inline scripts. Without the
package /docs is not served (404); ``/openapi.json`` always is. ``/redoc`` is off (FastAPI's
loads from a CDN).
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, HTMLResponse

from ..problems import Problem

router = APIRouter(include_in_schema=False)


def _assets() -> Path | None:
    try:
        import fastapi_offline
    except ImportError:
        return None
    folder = Path(fastapi_offline.__file__).resolve().parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


ASSETS = _assets()
FILES = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
         "favicon.png": "image/png"}
# Swagger UI sets inline style attributes (hence 'unsafe-inline' for styles only) and draws
# icons from data: URIs; it fetches /openapi.json and "Try it out" calls from this origin.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "img-src 'self' data:; connect-src 'self'; font-src 'self'; base-uri 'none'; "
       "frame-ancestors 'none'; form-action 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}
PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>tracekws API</title>
<link rel="icon" href="docs/assets/favicon.png">
<link rel="stylesheet" href="docs/assets/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="docs/assets/swagger-ui-bundle.js"></script>
<script src="static/swagger-init.js"></script>
</body>
</html>
"""

if ASSETS is not None:

    @router.get("/docs")
    async def docs() -> HTMLResponse:
        return HTMLResponse(PAGE, headers=HEADERS)

    @router.get("/docs/assets/{name}")
    async def docs_asset(name: str) -> FileResponse:
        if name not in FILES:
            raise Problem("not-found", f"no docs asset {name!r}")
        return FileResponse(ASSETS / name, media_type=FILES[name],
                            headers={**HEADERS, "Cache-Control": "max-age=86400"})
