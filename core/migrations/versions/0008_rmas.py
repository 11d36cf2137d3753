"""Refunds become RMAs: the rmas, rma_lines and rma_changes tables, and each channel's
refund_restock_actions setting

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 19:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("sales_channels") as batch:
        batch.add_column(sa.Column("refund_restock_actions", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    op.create_table(
        "rmas",
        sa.Column("id", PK, primary_key=True),
        sa.Column("channel_id", PK, sa.ForeignKey("sales_channels.id"), nullable=False),
        sa.Column("order_id", PK, sa.ForeignKey("orders.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("channel_refund_id", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("warning", sa.Text(), nullable=True),
        sa.Column("delivery_id", PK, nullable=True),
        sa.Column("refunded_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("channel_id", "channel_refund_id", name="uq_rmas_channel_refund"),
    )
    op.create_index("ix_rmas_order_id", "rmas", ["order_id"])
    op.create_index("ix_rmas_channel_status", "rmas", ["channel_id", "status", "id"])
    op.create_table(
        "rma_lines",
        sa.Column("id", PK, primary_key=True),
        sa.Column("rma_id", PK, sa.ForeignKey("rmas.id", ondelete="CASCADE"), nullable=False),
        sa.Column("channel_line_id", sa.String(64), nullable=True),
        sa.Column("sku", sa.String(255), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount", sa.String(32), nullable=True),
        sa.Column("action", sa.String(16), nullable=True),
    )
    op.create_index("ix_rma_lines_rma_id", "rma_lines", ["rma_id"])
    op.create_table(
        "rma_changes",
        sa.Column("id", PK, primary_key=True),
        sa.Column("rma_id", PK, sa.ForeignKey("rmas.id", ondelete="CASCADE"), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("delivery_id", PK, nullable=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_rma_changes_rma_id", "rma_changes", ["rma_id"])


def downgrade() -> None:
    op.drop_table("rma_changes")
    op.drop_table("rma_lines")
    op.drop_table("rmas")
    with op.batch_alter_table("sales_channels") as batch:
        batch.drop_column("refund_restock_actions")
