"""Profiles choose their learning rule: ``profiles.rule`` (NULL: the service's default).

Revision ID: 0002_profile_rule
Revises: 0001_initial
Create Date: 2026-11-23
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_profile_rule"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


# Plain ALTER TABLE, never batch mode: batch mode rebuilds the table on SQLite, and dropping
# the old ``profiles`` table with foreign keys on would cascade-delete every alias and version.
def upgrade() -> None:
    op.add_column("profiles", sa.Column("rule", sa.String(32), nullable=True))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":  # SQLite >= 3.35 drops a plain column in place
        op.execute("ALTER TABLE profiles DROP COLUMN rule")
    else:
        op.drop_column("profiles", "rule")
