"""Alembic environment: uses the service's connection when run at startup, else the URL
from the service settings (TRACEKWS_DATABASE_URL / TRACEKWS_DATA_DIR)."""

from __future__ import annotations

from alembic import context
from tracekws.service.models import Base

target_metadata = Base.metadata
config = context.config


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=connection.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from tracekws.service.db import make_engine
    from tracekws.service.settings import Settings

    settings = Settings()
    if settings.is_sqlite:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(str(settings.database_url))
    with engine.connect() as conn:
        _run(conn)
        conn.commit()


def run_migrations_offline() -> None:
    context.configure(url=config.get_main_option("sqlalchemy.url"),
                      target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
