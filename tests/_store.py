"""A service database on disk with one profile, for tests that run the service's other
processes (``tracekws wyoming``, ``tracekws listen``) against a stored profile."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine
from tracekws.model.pipeline import KWSModel
from tracekws.service import db
from tracekws.service.store import Store


def profile_store(data: Path, model_path: Path, profile: str = "alice") -> tuple[Engine, Store]:
    """``data``/tracekws.db, migrated, holding ``profile`` (version 1: the model at
    ``model_path``); the caller disposes of the engine."""
    data.mkdir(parents=True, exist_ok=True)
    engine = db.make_engine(f"sqlite:///{data / 'tracekws.db'}")
    db.migrate(engine)
    base = Path(model_path).read_bytes()
    store = Store(engine, base, KWSModel.from_bytes(base).labels)
    store.create_profile(profile)
    return engine, store
