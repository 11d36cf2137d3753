"""Outbound messages and attempts name their endpoint, event and message by id, without foreign
keys: each key's check locked the parent row for every message and attempt written (PostgreSQL
``FOR KEY SHARE``), the server's largest cost at a few hundred events a second. The code
deletes children before parents (retention, deleting an endpoint).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 08:30:00
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

#: The keys as PostgreSQL named them, and as SQLite's rebuild names its unnamed ones.
_NAMES = {"fk": "%(table_name)s_%(column_0_name)s_fkey"}
#: (table, column, the table its key referred to)
_KEYS = (("webhook_messages", "endpoint_id", "webhook_endpoints"),
         ("webhook_messages", "event_id", "events"),
         ("webhook_attempts", "endpoint_id", "webhook_endpoints"),
         ("webhook_attempts", "message_id", "webhook_messages"))


def upgrade() -> None:
    for table in ("webhook_attempts", "webhook_messages"):
        with op.batch_alter_table(table, naming_convention=_NAMES) as batch_op:
            for owner, column, _parent in _KEYS:
                if owner == table:
                    batch_op.drop_constraint(f"{table}_{column}_fkey", type_="foreignkey")


def downgrade() -> None:
    for table in ("webhook_messages", "webhook_attempts"):
        with op.batch_alter_table(table, naming_convention=_NAMES) as batch_op:
            for owner, column, parent in _KEYS:
                if owner == table:
                    batch_op.create_foreign_key(f"{table}_{column}_fkey", parent, [column],
                                                ["id"], ondelete="CASCADE")
