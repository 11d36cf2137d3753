"""Retention: an index on webhook_messages.event_id, so deleting an event (its foreign key's
check on both databases) and asking which events messages still refer to are index lookups,
not a scan of every message

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 22:00:00
"""
from alembic import op


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webhook_messages_event", "webhook_messages", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_messages_event", table_name="webhook_messages")
