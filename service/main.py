"""The FastAPI app factory: ``uvicorn tracekws.service.main:create_app --factory``.

The lifespan loads the shipped model once, opens the database and upgrades its schema;
routes share that state through :class:`service.runtime.Runtime`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.to_thread
from fastapi import FastAPI

from . import logfilter, problems
from .metrics import MetricsMiddleware
from .profiles import Profiles
from .routes import adapt, docs, health, metrics, predict, profiles, stream, ui, versions
from .runtime import Runtime
from .security import CrossOriginMiddleware
from .settings import Settings

log = logging.getLogger("tracekws.service")


def _logging() -> None:
    """Service messages at INFO on stderr unless the host application configured them."""
    root = logging.getLogger("tracekws")
    if not root.handlers and not logging.getLogger().handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
        root.addHandler(h)
        root.setLevel(logging.INFO)


def create_app(settings: Settings | None = None) -> FastAPI:
    _logging()
    settings = settings or Settings()
    logfilter.install(k.key for k in settings.api_keys)  # no key (or ?token=) in any log line
    rt = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(rt.start)
        try:
            yield
        finally:
            rt.close()

    app = FastAPI(
        title="tracekws",
        summary="Keyword spotting with a spiking network you personalise on-device with "
                "Traces Propagation",
        version="0.1.0",
        lifespan=lifespan,
        docs_url=None,  # service.routes.docs: Swagger UI from local files, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.runtime = rt
    app.state.profiles = Profiles(rt)
    problems.install(app)

    for r in (predict, adapt, profiles, versions, health, stream, metrics, ui, docs):
        app.include_router(r.router)
    generate = app.openapi

    def openapi() -> dict:
        """FastAPI's schema plus the Problem object every error response refers to."""
        schema = generate()
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = \
            problems.PROBLEM_SCHEMA
        return schema

    app.openapi = openapi
    app.add_middleware(CrossOriginMiddleware, allowed_origins=settings.allowed_origins)
    app.add_middleware(MetricsMiddleware, metrics=rt.metrics)
    return app
