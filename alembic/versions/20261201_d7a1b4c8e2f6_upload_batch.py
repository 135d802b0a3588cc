"""every upload request is kept: what became of its files, by label and split

Revision ID: d7a1b4c8e2f6
Revises: c5f2a9d3e7b1
Create Date: 2026-12-01 12:25:00
"""

import sqlalchemy as sa
from alembic import op

revision = "d7a1b4c8e2f6"
down_revision = "c5f2a9d3e7b1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_batch",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("upload_key", sa.String(length=64), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("counts", sa.JSON(), nullable=False),
        sa.Column("rejected_files", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["project.id"],
            name=op.f("fk_upload_batch_project_id_project"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_upload_batch")),
    )
    with op.batch_alter_table("upload_batch", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_upload_batch_project_id"), ["project_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("upload_batch", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_batch_project_id"))
    op.drop_table("upload_batch")
