"""every token expires: kind (session or api), expires_at required, last_used_at

Revision ID: 7c2e9a4f1d63
Revises: 5a1c3e7d9b20
Create Date: 2026-12-01 08:30:00
"""
from datetime import timedelta

import sqlalchemy as sa
from alembic import op

revision = "7c2e9a4f1d63"
down_revision = "5a1c3e7d9b20"
branch_labels = None
depends_on = None

# Tokens made before this revision never expired: sessions get the default session lifetime
# from when they were made, tokens made by `autodl user create --token` a year.
SESSION_LIFETIME = timedelta(days=14)
API_LIFETIME = timedelta(days=365)


def upgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="session")
        )
        batch_op.add_column(sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    connection = op.get_bind()
    token = sa.table(
        "api_token",
        sa.column("id"),
        sa.column("name"),
        sa.column("kind"),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("expires_at", sa.DateTime(timezone=True)),
    )
    rows = connection.execute(sa.select(token.c.id, token.c.name, token.c.created_at)).all()
    for row in rows:
        kind = "api" if row.name == "cli" else "session"
        lifetime = API_LIFETIME if kind == "api" else SESSION_LIFETIME
        connection.execute(
            token.update()
            .where(token.c.id == row.id)
            .values(kind=kind, expires_at=row.created_at + lifetime)
        )
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.alter_column("kind", server_default=None)
        batch_op.alter_column(
            "expires_at", existing_type=sa.DateTime(timezone=True), nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("api_token", schema=None) as batch_op:
        batch_op.alter_column("expires_at", existing_type=sa.DateTime(timezone=True), nullable=True)
        batch_op.drop_column("last_used_at")
        batch_op.drop_column("kind")
