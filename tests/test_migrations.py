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
