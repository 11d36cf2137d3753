"""The Alembic migrations produce exactly the models' schema, on the database the suite uses."""
import json

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from core.db import MIGRATIONS, alembic_config
from core.models import Base


def test_migrated_schema_matches_the_models(database_url):
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={
                "compare_type": True, "compare_server_default": True})
            diff = compare_metadata(context, Base.metadata)
            assert diff == [], diff
            assert set(inspect(conn).get_table_names()) >= set(Base.metadata.tables)
            head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
            assert context.get_current_revision() == head
    finally:
        engine.dispose()


def test_migrations_have_a_single_head():
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert len(script.get_heads()) == 1
    assert (MIGRATIONS / "versions").is_dir()


def test_delivery_bodies_are_lz4_compressed_on_postgresql(database_url, app, bc):
    """Migration 0002: a big body is stored with lz4 (cheaper for the server to write and read
    than pglz) and reads back byte for byte."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name != "postgresql":
                pytest.skip("TOAST compression is PostgreSQL's")
            if not conn.execute(text(
                    "SELECT 1 FROM pg_settings WHERE name = 'default_toast_compression' "
                    "AND 'lz4' = ANY(enumvals)")).first():
                pytest.skip("this PostgreSQL server was built without lz4")
            assert conn.execute(text(
                "SELECT attcompression FROM pg_attribute WHERE attrelid = 'deliveries'::regclass "
                "AND attname = 'body'")).scalar() == "l"
        bc.create()
        payload = bc.payload()
        payload["padding"] = "".join(f"{i:06d}" for i in range(4000))  # 24 kB, compressible
        body = json.dumps(payload).encode()
        assert bc.send(body=body).status_code == 200
        with engine.connect() as conn:
            method, stored = conn.execute(text(
                "SELECT pg_column_compression(body), body FROM deliveries")).one()
        assert method == "lz4" and bytes(stored) == body
    finally:
        engine.dispose()


def test_the_outbox_keeps_its_rows_and_loses_its_foreign_keys(tmp_path):
    """0011 on SQLite rebuilds the two tables: their rows and indexes survive, the keys go."""
    from alembic import command
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    cfg = alembic_config(url)
    command.upgrade(cfg, "0010")
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO webhook_endpoints (id, url, description, event_types, channel_ids, "
                "enabled, secret_sealed, position, created_at, updated_at) VALUES (1, "
                "'https://r.example/hooks', '', '[]', '[]', 1, 'x', 0, '2026-12-02', "
                "'2026-12-02')"))
            conn.execute(text("INSERT INTO events (id, event_id, type, occurred_at, data) "
                              "VALUES (7, 'evt_1', 'order.cancelled', '2026-12-02', '{}')"))
            conn.execute(text(
                "INSERT INTO webhook_messages (id, endpoint_id, event_id, state, attempts, "
                "next_attempt_at, created_at) VALUES (3, 1, 7, 'delivered', 1, '2026-12-02', "
                "'2026-12-02')"))
            conn.execute(text("INSERT INTO webhook_attempts (endpoint_id, message_id, at, "
                              "latency_ms) VALUES (1, 3, '2026-12-02', 1.5)"))
        command.upgrade(cfg, "head")
        with engine.connect() as conn:
            inspector = inspect(conn)
            for table in ("webhook_messages", "webhook_attempts"):
                assert inspector.get_foreign_keys(table) == []
            assert {i["name"] for i in inspector.get_indexes("webhook_messages")} >= {
                "ix_webhook_messages_pending", "ix_webhook_messages_event"}
            assert conn.execute(text("SELECT endpoint_id, event_id FROM webhook_messages"
                                     )).all() == [(1, 7)]
            assert conn.execute(text("SELECT message_id FROM webhook_attempts")).all() == [(3,)]
        command.downgrade(cfg, "0010")
        engine.dispose()  # a connection of its own: SQLite caches the schema per connection
        with engine.connect() as conn:
            assert len(inspect(conn).get_foreign_keys("webhook_attempts")) == 2
    finally:
        engine.dispose()
