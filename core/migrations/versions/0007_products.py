"""The product catalog: products, product_variants, product_changes

A catalog per channel, kept in step with its product webhooks: a deleted product stays (deleted_at)
with its variants and history.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "products",
        sa.Column("id", PK, primary_key=True),
        sa.Column("channel_id", PK, sa.ForeignKey("sales_channels.id"), nullable=False),
        sa.Column("channel_product_id", sa.String(64), nullable=False),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("sku", sa.String(255), nullable=True),
        sa.Column("price", sa.String(32), nullable=True),
        sa.Column("status", sa.String(32), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", sa.DateTime(), nullable=True),
        sa.Column("channel_updated_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("channel_id", "channel_product_id",
                            name="uq_products_channel_product"),
    )
    op.create_index("ix_products_channel_sku", "products", ["channel_id", "sku"])
    op.create_table(
        "product_variants",
        sa.Column("id", PK, primary_key=True),
        sa.Column("product_id", PK, sa.ForeignKey("products.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("channel_id", PK, sa.ForeignKey("sales_channels.id"), nullable=False),
        sa.Column("channel_variant_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(255), nullable=True),
        sa.Column("title", sa.Text(), nullable=True),
        sa.Column("price", sa.String(32), nullable=True),
        sa.Column("position", sa.Integer(), nullable=True),
        sa.UniqueConstraint("product_id", "channel_variant_id",
                            name="uq_product_variants_variant"),
    )
    op.create_index("ix_product_variants_channel_variant", "product_variants",
                    ["channel_id", "channel_variant_id"])
    op.create_index("ix_product_variants_channel_sku", "product_variants", ["channel_id", "sku"])
    op.create_table(
        "product_changes",
        sa.Column("id", PK, primary_key=True),
        sa.Column("product_id", PK, sa.ForeignKey("products.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("event", sa.String(32), nullable=False),
        sa.Column("channel_updated_at", sa.DateTime(), nullable=True),
        sa.Column("delivery_id", PK, nullable=True),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
    )
    op.create_index("ix_product_changes_product_id", "product_changes", ["product_id"])
    op.create_index("ix_product_changes_delivery_id", "product_changes", ["delivery_id"])


def downgrade() -> None:
    op.drop_table("product_changes")
    op.drop_table("product_variants")
    op.drop_table("products")
