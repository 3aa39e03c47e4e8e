"""Initial schema: profiles, versions (immutable weights), aliases.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "profiles",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("store_audio", sa.Boolean(), nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "versions",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("profile", sa.String(64),
                  sa.ForeignKey("profiles.name", ondelete="CASCADE"), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("parent", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("label", sa.String(64), nullable=True),
        sa.Column("hyperparameters", sa.JSON(), nullable=False),
        sa.Column("clips", sa.Integer(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("weights", sa.LargeBinary(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.UniqueConstraint("profile", "number", name="uq_versions_profile_number"),
        sa.ForeignKeyConstraint(["profile", "parent"], ["versions.profile", "versions.number"],
                                name="fk_versions_parent", ondelete="CASCADE"),
    )
    op.create_index("ix_versions_profile", "versions", ["profile"])
    op.create_table(
        "aliases",
        sa.Column("profile", sa.String(64),
                  sa.ForeignKey("profiles.name", ondelete="CASCADE"), primary_key=True),
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("version_id", sa.Integer(),
                  sa.ForeignKey("versions.id", ondelete="CASCADE"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("aliases")
    op.drop_index("ix_versions_profile", table_name="versions")
    op.drop_table("versions")
    op.drop_table("profiles")
