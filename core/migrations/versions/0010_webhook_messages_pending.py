"""Outbound messages: one index for the sender's due-message scan (an endpoint's pending
messages in id order) in place of the two the correlated due query used

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 22:00:00
"""
from alembic import op


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_messages_order')
        batch_op.drop_index('ix_webhook_messages_due')
        batch_op.create_index('ix_webhook_messages_pending', ['endpoint_id', 'state', 'id'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_messages_pending')
        batch_op.create_index('ix_webhook_messages_due',
                              ['endpoint_id', 'state', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_messages_order', ['endpoint_id', 'order_key', 'state'],
                              unique=False)
