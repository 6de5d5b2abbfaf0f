"""`deskbot kb gaps` reads the questions the knowledge base could not answer from the CRM, as
the supervisors' /gaps does (both databases)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from bot.cli import main
from crm_core.clock import utcnow
from crm_core.db import create_engine, create_session_factory
from crm_core.models import Customer, Direction, Interaction, InteractionKind
from tests.bot.test_cli_db_import import empty_schema

K = InteractionKind
# (customer, question, hours ago, the agent's answer within 72 h)
ASKED = [
    ("Ann", "where is my parcel", 3.0, "It is on its way, tracking 123"),
    ("Ben", "where's my parcel??", 2.0, None),
    ("Cem", "can I pay with bitcoin", 1.0, None),
    ("Dee", "do you ship to mars", 24.0 * 40, None),  # outside the default 7 days
]


@pytest.fixture
def crm_url(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.delenv("DESKBOT_TIMEZONE", raising=False)
    monkeypatch.setenv("DESKBOT_DATABASE_URL", database_url)
    empty_schema(database_url)
    assert main(["db", "upgrade"]) == 0
    asyncio.run(_seed(database_url))
    return database_url


async def _seed(url: str) -> None:
    engine = create_engine(url)
    now = utcnow()
    try:
        async with create_session_factory(engine)() as session:
            for name, question, hours, answer in ASKED:
                customer = Customer(name=name)
                session.add(customer)
                await session.flush()
                at = now - timedelta(hours=hours)
                said = [(K.message, Direction.inbound, question, 0)]
                said.append((K.kb_none, Direction.outbound, "I have no answer to that", 1))
                if answer:
                    said.append((K.agent_reply, Direction.outbound, answer, 600))
                for kind, direction, text, seconds in said:
                    session.add(
                        Interaction(
                            customer_id=customer.id,
                            channel="telegram",
                            direction=direction,
                            kind=kind,
                            text=text,
                            occurred_at=at + timedelta(seconds=seconds),
                        )
                    )
            await session.commit()
    finally:
        await engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def test_gaps_from_the_crm_largest_group_first(
    crm_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "kb", "gaps")

    assert (code, err) == (0, "")
    head, *groups = out.splitlines()
    assert head.startswith("knowledge gaps, 7d (")
    assert head.endswith("UTC): 3 question(s) without an answer")
    assert groups == [
        '1. 2x "where\'s my parcel??"',
        "   - where is my parcel",
        "   agents answered: It is on its way, tracking 123",
        "2. 1x 'can I pay with bitcoin'",
    ]


def test_period_limit_and_examples(crm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "kb", "gaps", "--period", "60d", "--limit", "1", "--examples", "1")
    assert code == 0
    assert out.splitlines()[0].endswith("4 question(s) without an answer")
    assert out.splitlines()[1:] == [
        '1. 2x "where\'s my parcel??"',
        "   agents answered: It is on its way, tracking 123",
    ]
    code, out, _ = run(capsys, "kb", "gaps", "--period", "today")
    assert code == 0 and "knowledge gaps, today" in out


def test_bad_options_are_explained(crm_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "kb", "gaps", "--period", "fortnight")
    assert code == 2 and "I don't understand the period 'fortnight'" in err
    code, _, err = run(capsys, "kb", "gaps", "--threshold", "0.5")
    assert (code, err) == (2, "error: --threshold applies to --from FILE only\n")


def test_a_missing_sqlite_database_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "nope.db"
    monkeypatch.setenv("DESKBOT_DATABASE_URL", f"sqlite+aiosqlite:///{missing}")
    code, _, err = run(capsys, "kb", "gaps")
    assert code == 2 and "no database at" in err and not missing.exists()
