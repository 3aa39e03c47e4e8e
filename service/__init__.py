"""tracekws HTTP service: FastAPI app, settings, SQLite store, routes (docs/design.md §1).

Run it with ``tracekws serve`` or ``uvicorn tracekws.service.main:create_app --factory``.
"""
