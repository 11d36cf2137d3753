"""PostgreSQL: delivery bodies compressed with lz4 instead of pglz

A webhook body past ~2 kB is compressed when its row is stored (TOAST). pglz, PostgreSQL's
default, cost the server ~75 us per 10.7 kB Shopify body more than lz4 (3,000 inserts in one
transaction: 193-204 vs 117-132 us each), on the intake's hot path, and is slower to decompress
when the worker reads the body; lz4 keeps 4.3 kB of it where pglz keeps 3.2 kB. Rows stored
before keep their pglz bodies (both read back the same). Nothing on SQLite, nor on a server
built without lz4 (PostgreSQL 14 and later can have it).

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 10:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def _has_lz4(bind) -> bool:
    if bind.dialect.name != "postgresql":
        return False
    return bool(bind.execute(sa.text(
        "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
        "AND 'lz4' = ANY(enumvals)")).first())


def upgrade() -> None:
    bind = op.get_bind()
    if _has_lz4(bind):
        op.execute("ALTER TABLE deliveries ALTER COLUMN body SET COMPRESSION lz4")


def downgrade() -> None:
    bind = op.get_bind()
    if _has_lz4(bind):
        op.execute("ALTER TABLE deliveries ALTER COLUMN body SET COMPRESSION default")
