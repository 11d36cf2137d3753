"""Deliveries: a partial index of the claims in flight by channel and expiry, so a claim's look
for lapsed claims reads only those that lapsed (ix_deliveries_claim made it read every claim in
flight, and every entry rows leaving "processing" left behind until vacuum: 1,179 buffer hits a
claim at half rate on PostgreSQL)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 08:40:00
"""
import sqlalchemy as sa
from alembic import op


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_deliveries_lapsed", "deliveries", ["channel_id", "claimed_until"],
                    postgresql_where=sa.text("state = 'processing'"),
                    sqlite_where=sa.text("state = 'processing'"))


def downgrade() -> None:
    op.drop_index("ix_deliveries_lapsed", table_name="deliveries")
