"""tracekws HTTP service: FastAPI app, settings, SQLite store, routes (docs/design.md §1).

Run it with ``tracekws serve`` or ``uvicorn service.main:create_app --factory``.
"""
