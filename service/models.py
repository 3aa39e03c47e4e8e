"""SQLAlchemy 2 models: profiles, immutable weight versions, aliases (``active``), and the
content-addressed weight blobs versions share (``blobs``, keyed by sha256: the shipped model is
stored once however many profiles start from it).

A version is never updated after it is written; rollback moves the ``active`` alias. The
parent of a version is another version of the same profile (composite foreign key), so the
history of a profile is a chain (or tree, after rollbacks) the database itself keeps intact.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class Profile(Base):
    __tablename__ = "profiles"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    store_audio: Mapped[bool] = mapped_column(Boolean, default=False)
    # learning rule of this profile's /adapt calls (None: the service's TRACEKWS_ADAPT_RULE)
    rule: Mapped[str | None] = mapped_column(String(32), nullable=True)


class Blob(Base):
    """Safetensors bytes, stored once per content (``sha256`` is the sha256 of ``data`` when
    it was written; a load re-checks it against the version's own ``sha256``)."""

    __tablename__ = "blobs"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        UniqueConstraint("profile", "number", name="uq_versions_profile_number"),
        ForeignKeyConstraint(["profile", "parent"], ["versions.profile", "versions.number"],
                             name="fk_versions_parent", ondelete="CASCADE"),
        Index("uq_versions_profile_idempotency_key", "profile", "idempotency_key", unique=True),
        Index("ix_versions_blob", "blob"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    profile: Mapped[str] = mapped_column(
        String(64), ForeignKey("profiles.name", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)  # 1, 2, ... within the profile
    parent: Mapped[int | None] = mapped_column(Integer, nullable=True)  # number of the parent
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    rule: Mapped[str] = mapped_column(String(32))  # "pretrained", "tp", "readout", ...
    label: Mapped[str | None] = mapped_column(String(64), nullable=True)  # label adapted
    hyperparameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    clips: Mapped[int] = mapped_column(Integer, default=0)  # utterances learned in this version
    labels: Mapped[list[str]] = mapped_column(JSON, default=list)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    # the blob holding the weights (blobs.sha256; no database foreign key, so that SQLite can
    # drop the column on downgrade: the store keeps it pointing at a row)
    blob: Mapped[str | None] = mapped_column(String(64), nullable=True)
    tags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # the Idempotency-Key of the /adapt call that made it (a retry returns this version)
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    # this version's own detector settings ({"thresholds": {keyword: t}, "refractory": s},
    # either part optional; tracekws.model.detect.DetectorSettings); NULL: the model's own
    detector: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True),
                                                            nullable=True)


class Alias(Base):
    __tablename__ = "aliases"

    profile: Mapped[str] = mapped_column(
        String(64), ForeignKey("profiles.name", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(32), primary_key=True)  # "active"
    version_id: Mapped[int] = mapped_column(Integer, ForeignKey("versions.id",
                                                                ondelete="CASCADE"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow,
                                                 onupdate=utcnow)
