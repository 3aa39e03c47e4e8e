"""/adapt idempotency: ``versions.idempotency_key`` (NULL: none), unique per profile.

Revision ID: 0003_idempotency_key
Revises: 0002_profile_rule
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_idempotency_key"
down_revision = "0002_profile_rule"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never batch mode (see 0002: a rebuild would cascade-delete on SQLite).
def upgrade() -> None:
    op.add_column("versions", sa.Column("idempotency_key", sa.String(128), nullable=True))
    op.create_index("uq_versions_profile_idempotency_key", "versions",
                    ["profile", "idempotency_key"], unique=True)


def downgrade() -> None:
    op.drop_index("uq_versions_profile_idempotency_key", table_name="versions")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE versions DROP COLUMN idempotency_key")
    else:
        op.drop_column("versions", "idempotency_key")
