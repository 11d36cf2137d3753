"""The Alembic migrations produce exactly the models' schema, on the database the suite uses."""
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

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
