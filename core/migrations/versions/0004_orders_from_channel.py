"""Orders come from the channel: per-channel webhook choices, the order's details, its lines

sales_channels.webhooks (null: derived from the status lists, so existing channels keep
cancellation and fulfilment on when their statuses are selected) and import_test_orders;
orders gain number, placed-at, currency, totals, addresses and payments; order_lines holds
the lines.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    with op.batch_alter_table("sales_channels") as batch:
        batch.add_column(sa.Column("webhooks", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("import_test_orders", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("order_number", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("placed_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("currency", sa.String(length=8), nullable=True))
        batch.add_column(sa.Column("totals", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("shipping_address", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("billing_address", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("payments", sa.JSON(), nullable=True))
        batch.create_index("ix_orders_channel_created", ["channel_id", "created_at"])
    op.create_table(
        "order_lines",
        sa.Column("id", PK, nullable=False),
        sa.Column("order_id", PK, nullable=False),
        sa.Column("channel_line_id", sa.String(length=64), nullable=True),
        sa.Column("product_id", sa.String(length=64), nullable=True),
        sa.Column("variant_id", sa.String(length=64), nullable=True),
        sa.Column("sku", sa.String(length=255), nullable=True),
        sa.Column("name", sa.String(length=255), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"))
    with op.batch_alter_table("order_lines") as batch:
        batch.create_index("ix_order_lines_order_id", ["order_id"])


def downgrade() -> None:
    op.drop_table("order_lines")
    with op.batch_alter_table("orders") as batch:
        batch.drop_index("ix_orders_channel_created")
        for column in ("payments", "billing_address", "shipping_address", "totals", "currency",
                       "placed_at", "order_number"):
            batch.drop_column(column)
    with op.batch_alter_table("sales_channels") as batch:
        batch.drop_column("import_test_orders")
        batch.drop_column("webhooks")
