"""label names unique up to case and Unicode form

Revision ID: 5a1c3e7d9b20
Revises: bf8dac169c85
Create Date: 2026-12-01 08:00:00
"""
import unicodedata

import sqlalchemy as sa
from alembic import op

revision = "5a1c3e7d9b20"
down_revision = "bf8dac169c85"
branch_labels = None
depends_on = None


def _key(name: str) -> str:
    # backend.projects.models.label_key as of this revision (a migration must not change later)
    return unicodedata.normalize("NFC", unicodedata.normalize("NFC", name).casefold())


def upgrade() -> None:
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.add_column(sa.Column("name_key", sa.String(length=320), nullable=True))
    connection = op.get_bind()
    label = sa.table(
        "label", sa.column("id"), sa.column("project_id"), sa.column("name"), sa.column("name_key")
    )
    taken: set[tuple[int, str]] = set()
    for row in connection.execute(sa.select(label.c.id, label.c.project_id, label.c.name).order_by(label.c.id)):
        key = _key(row.name)
        if (row.project_id, key) in taken:
            # 'Ants' and 'ants' already both exist: the later one keeps its name and rows
            # under a key no new name can produce (a name holds no control characters).
            key = f"{key}\x00{row.id}"
        taken.add((row.project_id, key))
        connection.execute(label.update().where(label.c.id == row.id).values(name_key=key))
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.alter_column("name_key", existing_type=sa.String(length=320), nullable=False)
        batch_op.drop_constraint("uq_label_project_id", type_="unique")
        batch_op.create_unique_constraint("uq_label_project_id_name_key", ["project_id", "name_key"])


def downgrade() -> None:
    with op.batch_alter_table("label", schema=None) as batch_op:
        batch_op.drop_constraint("uq_label_project_id_name_key", type_="unique")
        batch_op.create_unique_constraint("uq_label_project_id", ["project_id", "name"])
        batch_op.drop_column("name_key")
