"""Migrations: an empty database reaches the models' schema, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from crm_core import migrate
from crm_core.db import create_engine, create_session_factory
from crm_core.models import Customer, Handoff, HandoffStatus


async def _empty(url: str) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            if engine.dialect.name == "postgresql":
                # Also drops the enum types and alembic_version left by other tests.
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


@pytest.fixture
async def empty_url(database_url: str) -> str:
    """A database with no tables at all (the shared fixtures create the schema with
    ``create_all``, which is exactly what these tests must not rely on)."""
    await _empty(database_url)
    return database_url


async def test_upgrade_creates_the_models_schema(empty_url: str) -> None:
    assert await migrate.current_revision(empty_url) is None

    await migrate.upgrade_database(empty_url)

    assert await migrate.current_revision(empty_url) == migrate.head_revision()
    # Models and migrations agree: autogenerate would find nothing to write.
    assert await migrate.check_schema_matches(empty_url) == []


async def test_upgrade_twice_is_a_no_op(empty_url: str) -> None:
    await migrate.upgrade_database(empty_url)
    await migrate.upgrade_database(empty_url)
    assert await migrate.current_revision(empty_url) == migrate.head_revision()


async def test_two_instances_upgrading_at_once_both_succeed(empty_url: str) -> None:
    await asyncio.wait_for(
        asyncio.gather(*(migrate.upgrade_database(empty_url) for _ in range(3))), timeout=60
    )
    assert await migrate.current_revision(empty_url) == migrate.head_revision()
    assert await migrate.check_schema_matches(empty_url) == []


async def test_downgrade_to_base_and_up_again(empty_url: str) -> None:
    """PostgreSQL enum types must go with their tables, or the second upgrade fails."""
    await migrate.upgrade_database(empty_url)

    def downgrade(conn: object) -> None:
        config = migrate.alembic_config(empty_url)
        config.attributes["connection"] = conn
        command.downgrade(config, "base")

    engine = create_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
    finally:
        await engine.dispose()
    assert await migrate.current_revision(empty_url) is None

    await migrate.upgrade_database(empty_url)
    assert await migrate.check_schema_matches(empty_url) == []


async def test_partial_unique_index_on_handoff_survives_migration(empty_url: str) -> None:
    await migrate.upgrade_database(empty_url)
    engine = create_engine(empty_url)
    factory = create_session_factory(engine)
    try:
        async with factory() as session:
            customer = Customer(name="Ada")
            session.add(customer)
            await session.commit()
            session.add(Handoff(customer_id=customer.id, status=HandoffStatus.closed))
            session.add(Handoff(customer_id=customer.id, status=HandoffStatus.closed))
            session.add(Handoff(customer_id=customer.id))
            await session.commit()  # closed ones do not count

            session.add(Handoff(customer_id=customer.id))
            with pytest.raises(IntegrityError):
                await session.commit()
    finally:
        await engine.dispose()


async def test_check_reports_a_difference(empty_url: str) -> None:
    await migrate.upgrade_database(empty_url)
    engine = create_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE customer ADD COLUMN shoe_size INTEGER"))
    finally:
        await engine.dispose()

    differences = await migrate.check_schema_matches(empty_url)

    assert [migrate.describe_difference(d) for d in differences] == [
        "remove_column customer.shoe_size"
    ]


async def test_ensure_current_upgrades_sqlite_creating_its_folder(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'folder' / 'deskbot.db'}"

    await migrate.ensure_database_current(url)

    assert await migrate.current_revision(url) == migrate.head_revision()


@pytest.mark.postgres
async def test_ensure_current_refuses_an_empty_postgres(postgres_url: str) -> None:
    await _empty(postgres_url)
    with pytest.raises(migrate.SchemaOutOfDate, match="run `deskbot db upgrade`"):
        await migrate.ensure_database_current(postgres_url)


@pytest.mark.postgres
async def test_ensure_current_refuses_postgres_behind_head(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _empty(postgres_url)
    await migrate.upgrade_database(postgres_url)
    await migrate.ensure_database_current(postgres_url)  # at head: fine
    head = migrate.head_revision()

    monkeypatch.setattr(migrate, "head_revision", lambda: "9999_newer")
    monkeypatch.setattr(migrate, "_is_known_revision", lambda revision: True)
    with pytest.raises(migrate.SchemaOutOfDate) as caught:
        await migrate.ensure_database_current(postgres_url)
    assert str(caught.value) == (
        f"database is at {head}, code needs 9999_newer; run `deskbot db upgrade`"
    )


async def test_unknown_revision_is_explained(empty_url: str) -> None:
    await migrate.upgrade_database(empty_url)
    engine = create_engine(empty_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = '0999_future'"))
    finally:
        await engine.dispose()

    with pytest.raises(migrate.SchemaOutOfDate) as caught:
        await migrate.ensure_database_current(empty_url)
    assert str(caught.value) == (
        "database is at 0999_future, which this version of deskbot does not know "
        f"(it needs {migrate.head_revision()}); was it upgraded by a newer deskbot?"
    )


async def test_database_made_before_migrations_gets_a_clear_message_and_can_be_stamped(
    engine: AsyncEngine, database_url: str
) -> None:
    # The shared ``engine`` fixture built the schema with create_all: no alembic_version.
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
        assert SQLModel.metadata.tables  # sanity: the models are registered

    with pytest.raises(migrate.SchemaOutOfDate, match="no migration history"):
        await migrate.ensure_database_current(database_url)

    await migrate.stamp_database(database_url)
    await migrate.ensure_database_current(database_url)
    assert await migrate.current_revision(database_url) == migrate.head_revision()


async def test_unreachable_database_is_one_clear_error() -> None:
    url = "postgresql+asyncpg://nobody@127.0.0.1:1/nothing"
    with pytest.raises(migrate.DatabaseUnavailable, match="cannot connect"):
        await migrate.upgrade_database(url)
