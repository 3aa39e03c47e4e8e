"""Detector settings per version: ``versions.detector`` (JSON; NULL: the model's own), so
per-keyword thresholds and the refractory time are part of an immutable version and a
rollback rolls them back too.

Revision ID: 0005_version_detector
Revises: 0004_shared_blobs
Create Date: 2026-12-11
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_version_detector"
down_revision = "0004_shared_blobs"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never batch mode (see 0002: a rebuild would cascade-delete on SQLite).
def upgrade() -> None:
    op.add_column("versions", sa.Column("detector", sa.JSON(), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite >= 3.35 drops a plain column in place
        op.execute("ALTER TABLE versions DROP COLUMN detector")
    else:
        op.drop_column("versions", "detector")
