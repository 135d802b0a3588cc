"""a run's stage names what it works on (backbone, epoch n of N) and what it counts

Revision ID: c5f2a9d3e7b1
Revises: e4f1a9c2b7d8
Create Date: 2026-12-01 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "c5f2a9d3e7b1"
down_revision = "e4f1a9c2b7d8"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stage_detail", sa.String(length=200), nullable=True))
        batch_op.add_column(
            sa.Column("unit", sa.String(length=16), nullable=False, server_default="images")
        )


def downgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("unit")
        batch_op.drop_column("stage_detail")
