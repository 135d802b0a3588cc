"""runs are named by their owner, and one succeeded run per project is its deployed model

Revision ID: b3d7e1f0a2c4
Revises: 838e824856d9
Create Date: 2026-12-01 11:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "b3d7e1f0a2c4"
down_revision = "838e824856d9"
branch_labels = None
depends_on = None

DEPLOYED_WHERE = sa.text("deployed_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("deployed_at", sa.DateTime(timezone=True), nullable=True))
    # At most one deployed run per project, whichever writer races.
    op.create_index(
        "uq_run_deployed_project_id",
        "run",
        ["project_id"],
        unique=True,
        sqlite_where=DEPLOYED_WHERE,
        postgresql_where=DEPLOYED_WHERE,
    )


def downgrade() -> None:
    op.drop_index("uq_run_deployed_project_id", table_name="run")
    with op.batch_alter_table("run", schema=None) as batch_op:
        batch_op.drop_column("deployed_at")
        batch_op.drop_column("name")
