"""/docs in a real browser: Swagger UI renders every operation from local files under the
page's Content-Security-Policy (a blocked script would leave the page empty). Needs Debian's
chromium (scripts/install-browser.sh) and the fastapi-offline package; skipped without."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def test_swagger_ui_renders_under_its_csp(uvicorn_server):
    pytest.importorskip("fastapi_offline")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("no chromium (scripts/install-browser.sh installs it)")
    srv = uvicorn_server()
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-extensions",
         "--virtual-time-budget=15000", "--dump-dom", srv.url + "/docs"],
        capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert "swagger-ui" in dom, out.stderr[-2000:]
    for path in ("/predict", "/adapt", "/profiles", "/profiles/{profile}/versions/{version}"):
        assert f'data-path="{path}"' in dom, (path, out.stderr[-2000:])
