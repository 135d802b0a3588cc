"""indexes for listing and filtering a large project's images by label and by split

Revision ID: e4f1a9c2b7d8
Revises: b3d7e1f0a2c4
Create Date: 2026-12-01 13:05:00
"""

from alembic import op

revision = "e4f1a9c2b7d8"
down_revision = "b3d7e1f0a2c4"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # (project, label, split): the project's counts per label and split and a label's page
    # and count read the index alone; (project, split, id): a split's page is read in id
    # order from the index (bench/large_project.py, 100,000 images).
    op.create_index("ix_image_project_label", "image", ["project_id", "label_id", "split"])
    op.create_index("ix_image_project_split", "image", ["project_id", "split", "id"])


def downgrade() -> None:
    op.drop_index("ix_image_project_split", table_name="image")
    op.drop_index("ix_image_project_label", table_name="image")
