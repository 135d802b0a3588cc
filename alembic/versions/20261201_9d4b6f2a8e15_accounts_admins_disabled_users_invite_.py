"""accounts: admins, disabled users, invite and reset links

Revision ID: 9d4b6f2a8e15
Revises: 7c2e9a4f1d63
Create Date: 2026-12-01 08:25:44.375290
"""
from alembic import op
import sqlalchemy as sa


revision = '9d4b6f2a8e15'
down_revision = '7c2e9a4f1d63'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('account_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['created_by_id'], ['user.id'], name=op.f('fk_account_link_created_by_id_user'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['user_id'], ['user.id'], name=op.f('fk_account_link_user_id_user'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_link')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_account_link_token_hash'))
    )
    with op.batch_alter_table('account_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_account_link_email'), ['email'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_link_user_id'), ['user_id'], unique=False)

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('is_admin', sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column('disabled_at', sa.DateTime(timezone=True), nullable=True))

    # A server upgraded from before accounts had admins keeps one: its first account.
    user = sa.table("user", sa.column("id"), sa.column("is_admin"))
    first = sa.select(sa.func.min(user.c.id)).scalar_subquery()
    op.get_bind().execute(user.update().where(user.c.id == first).values(is_admin=True))
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.alter_column('is_admin', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_column('disabled_at')
        batch_op.drop_column('is_admin')

    with op.batch_alter_table('account_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_link_user_id'))
        batch_op.drop_index(batch_op.f('ix_account_link_email'))

    op.drop_table('account_link')
