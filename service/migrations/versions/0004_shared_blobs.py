"""Weights move to a content-addressed ``blobs`` table (sha256 -> bytes) that versions share
through ``versions.blob``: version 1 of every profile (the shipped model) is stored once.

Upgrade keys each existing blob by the sha256 of its bytes as stored, not by the version's
declared ``sha256``, so a corrupt version stays corrupt (and never overwrites a good copy).
Downgrade copies the bytes back into ``versions.weights``.

Revision ID: 0004_shared_blobs
Revises: 0003_idempotency_key
Create Date: 2026-12-10
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0004_shared_blobs"
down_revision = "0003_idempotency_key"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never batch mode (see 0002: a rebuild would cascade-delete on SQLite).
def _drop_column(table: str, column: str) -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite >= 3.35 drops a plain column in place
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
    else:
        op.drop_column(table, column)


def upgrade() -> None:
    op.create_table(
        "blobs",
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
    )
    op.add_column("versions", sa.Column("blob", sa.String(64), nullable=True))
    conn = op.get_bind()
    ids = [r[0] for r in conn.execute(sa.text("SELECT id FROM versions ORDER BY id"))]
    stored: set[str] = set()
    for vid in ids:  # one blob in memory at a time
        data = conn.execute(sa.text("SELECT weights FROM versions WHERE id = :i"),
                            {"i": vid}).scalar_one()
        data = bytes(data)
        key = hashlib.sha256(data).hexdigest()
        if key not in stored:
            conn.execute(sa.text("INSERT INTO blobs (sha256, size, data) VALUES (:k, :n, :d)"),
                         {"k": key, "n": len(data), "d": data})
            stored.add(key)
        conn.execute(sa.text("UPDATE versions SET blob = :k WHERE id = :i"),
                     {"k": key, "i": vid})
    _drop_column("versions", "weights")
    op.create_index("ix_versions_blob", "versions", ["blob"])


def downgrade() -> None:
    conn = op.get_bind()
    op.add_column("versions", sa.Column("weights", sa.LargeBinary(), nullable=True))
    rows = conn.execute(sa.text("SELECT id, blob FROM versions ORDER BY id")).all()
    for vid, key in rows:
        conn.execute(sa.text("UPDATE versions SET weights = (SELECT data FROM blobs "
                             "WHERE sha256 = :k) WHERE id = :i"), {"k": key, "i": vid})
    if conn.dialect.name != "sqlite":  # SQLite cannot add NOT NULL to an existing column
        op.alter_column("versions", "weights", nullable=False)
    op.drop_index("ix_versions_blob", table_name="versions")
    _drop_column("versions", "blob")
    op.drop_table("blobs")
