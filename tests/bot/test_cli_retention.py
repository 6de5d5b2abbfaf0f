"""`deskbot db retention`: reports and applies the retention (both databases)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from sqlmodel import select

from bot.cli import main
from crm_core.clock import utcnow
from crm_core.db import create_engine, create_session_factory
from crm_core.models import Customer, Direction, Interaction, InteractionKind
from tests.bot.test_cli_db_import import empty_schema


@pytest.fixture
def desk_url(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A migrated database named by DESKBOT_DATABASE_URL, with three interactions: 100, 40
    and 1 day(s) old."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name in ("DESKBOT_RETENTION_DAYS", "DESKBOT_RETENTION_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("DESKBOT_DATABASE_URL", database_url)
    empty_schema(database_url)
    assert main(["db", "upgrade"]) == 0
    asyncio.run(_seed(database_url))
    return database_url


async def _seed(url: str) -> None:
    engine = create_engine(url)
    try:
        async with create_session_factory(engine)() as session:
            customer = Customer(name="Ann", phone="+4915112345678")
            session.add(customer)
            await session.flush()
            for days in (100, 40, 1):
                session.add(
                    Interaction(
                        customer_id=customer.id,
                        channel="telegram",
                        direction=Direction.inbound,
                        kind=InteractionKind.message,
                        text=f"said {days} days ago",
                        details={"chat_id": 555000111, "type": "message"},
                        occurred_at=utcnow() - timedelta(days=days),
                    )
                )
            await session.commit()
    finally:
        await engine.dispose()


def _texts(url: str) -> list[str | None]:
    async def read() -> list[str | None]:
        engine = create_engine(url)
        try:
            async with create_session_factory(engine)() as session:
                rows = await session.exec(select(Interaction).order_by(Interaction.occurred_at))
                return [row.text for row in rows.all()]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_dry_run_reports_and_changes_nothing(
    desk_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKBOT_RETENTION_DAYS", "30")
    code, out, _ = run(capsys, "db", "retention", "--dry-run")
    assert code == 0
    assert out.startswith("dry run: 2 interaction(s) older than 30 day(s) (before ")
    assert out.endswith("UTC) would be anonymised\n")
    code, out, _ = run(capsys, "db", "retention", "--dry-run", "--days", "50", "--mode", "delete")
    assert (code, out.split(" (")[0]) == (0, "dry run: 1 interaction(s) older than 50 day(s)")
    assert "would be deleted" in out
    assert _texts(desk_url) == ["said 100 days ago", "said 40 days ago", "said 1 days ago"]


def test_anonymise_then_delete(
    desk_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKBOT_RETENTION_DAYS", "30")
    code, out, _ = run(capsys, "db", "retention")
    assert code == 0 and out.startswith("2 interaction(s) older than 30 day(s)")
    assert out.endswith("anonymised\n")
    assert _texts(desk_url) == [None, None, "said 1 days ago"]
    code, out, _ = run(capsys, "db", "retention")
    assert out.startswith("0 interaction(s)")  # nothing left to do

    monkeypatch.setenv("DESKBOT_RETENTION_MODE", "delete")
    code, out, _ = run(capsys, "db", "retention")
    assert code == 0 and out.startswith("2 interaction(s)") and out.endswith("deleted\n")
    assert _texts(desk_url) == ["said 1 days ago"]


def test_retention_off_or_bad(
    desk_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, out, _ = run(capsys, "db", "retention")
    assert (code, out) == (
        0,
        "retention is off (DESKBOT_RETENTION_DAYS is 0 or unset): interactions are kept\n",
    )
    monkeypatch.setenv("DESKBOT_RETENTION_MODE", "shred")
    code, _, err = run(capsys, "db", "retention")
    assert code == 2 and "DESKBOT_RETENTION_MODE" in err
    monkeypatch.setenv("DESKBOT_RETENTION_MODE", "anonymize")  # the American spelling too
    monkeypatch.setenv("DESKBOT_RETENTION_DAYS", "30")
    assert run(capsys, "db", "retention", "--dry-run")[0] == 0
    assert _texts(desk_url) == ["said 100 days ago", "said 40 days ago", "said 1 days ago"]
