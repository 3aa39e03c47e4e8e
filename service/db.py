"""Engine setup (SQLite WAL + busy timeout, or PostgreSQL) and Alembic migrations at startup.

SQLite: every connection gets ``journal_mode=WAL`` (readers never block the writer),
``busy_timeout`` (a writer waits for the lock instead of failing), ``foreign_keys=ON`` and
``synchronous=FULL`` (a committed version survives a crash). pysqlite's own transaction
handling is switched off and SQLAlchemy emits ``BEGIN`` itself, ``BEGIN IMMEDIATE`` for
connections marked ``write=True``, so a read-check-write (is the parent still the active
version?) holds the write lock from its first read.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def advisory_key(profile: str) -> int:
    """A PostgreSQL advisory lock key (signed 64-bit) for one profile's adaptations."""
    import hashlib

    digest = hashlib.sha256(b"tracekws-profile:" + profile.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def make_lock_engine(engine: Engine) -> Engine | None:
    """PostgreSQL: an engine without a pool (one connection per held lock, so long uploads
    never take the request pool's connections) in autocommit (no idle transaction); None for
    SQLite, where the per-process lock and the commit check are all there is."""
    if engine.dialect.name != "postgresql":
        return None
    from sqlalchemy.pool import NullPool

    return create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT")


def try_advisory_lock(conn: Connection, profile: str) -> bool:
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"),
                             {"k": advisory_key(profile)}).scalar())


def make_engine(url: str, busy_timeout_ms: int = 10_000) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": busy_timeout_ms / 1000})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record) -> None:
            dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_begin)
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            write = conn.get_execution_options().get("write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextmanager
def session(engine: Engine, write: bool = False) -> Iterator[Session]:
    """One transaction: commits on success, rolls back on error.

    ``write=True`` takes SQLite's write lock at BEGIN (PostgreSQL callers lock rows with
    ``SELECT ... FOR UPDATE``).
    """
    with engine.connect() as conn:
        if write:
            conn = conn.execution_options(write=True)
        with conn.begin(), Session(bind=conn, expire_on_commit=False) as s:
            yield s
            s.flush()


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def migrate(engine: Engine) -> str:
    """Upgrade the schema to the newest revision; returns it."""
    from alembic import command
    from alembic.script import ScriptDirectory

    cfg = alembic_config(str(engine.url.render_as_string(hide_password=False)))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn = conn.execution_options(write=True)  # concurrent starts wait, then no-op
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        try:
            return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except Exception:
            return None


def integrity_ok(engine: Engine) -> bool:
    """SQLite ``PRAGMA integrity_check`` and ``foreign_key_check`` (True elsewhere)."""
    if engine.dialect.name != "sqlite":
        return True
    with engine.connect() as conn:
        ok = conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        fk = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
    return ok and not fk
