"""Channels can be deleted: sales_channels.deleted_at

A deleted channel keeps its row, so the orders, deliveries and histories that name it stay
readable; deleted_at marks it gone from the lists and closed to webhooks.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 15:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sales_channels") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("sales_channels") as batch:
        batch.drop_column("deleted_at")
