"""Email alerts: the alerts outbox, and each channel's alert recipients

An alert is written in the transaction of the change it reports (a subscription check, a
channel deactivated, deliveries gone dead) and mailed by the worker afterwards.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Added empty for the existing channels, then NOT NULL as the model has it (no server
    # default: the application writes the value).
    with op.batch_alter_table("sales_channels") as batch:
        batch.add_column(sa.Column("alert_emails", sa.JSON(), nullable=True))
    op.execute("UPDATE sales_channels SET alert_emails = '[]'")
    with op.batch_alter_table("sales_channels") as batch:
        batch.alter_column("alert_emails", existing_type=sa.JSON(), nullable=False)
    op.create_table(
        "alerts",
        sa.Column("id", PK, primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("channel_id", PK, sa.ForeignKey("sales_channels.id"), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("subject", sa.String(255), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=True),
    )
    op.create_index("ix_alerts_due", "alerts", ["status", "next_attempt_at"])
    op.create_index("ix_alerts_channel_kind", "alerts", ["channel_id", "kind", "id"])


def downgrade() -> None:
    op.drop_index("ix_alerts_channel_kind", table_name="alerts")
    op.drop_index("ix_alerts_due", table_name="alerts")
    op.drop_table("alerts")
    with op.batch_alter_table("sales_channels") as batch:
        batch.drop_column("alert_emails")
