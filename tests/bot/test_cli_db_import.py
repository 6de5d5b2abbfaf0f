"""`deskbot db ...` and `deskbot import ...`: exit codes and messages, never a traceback."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.cli import main
from crm_core import migrate
from crm_core.db import create_engine


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run from an empty folder, so no stray .env or deskbot.db is read."""
    monkeypatch.chdir(tmp_path)
    for name in ("DESKBOT_DATABASE_URL", "DESKBOT_SUPERVISOR_IDS"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def execute_sql(url: str, *statements: str) -> None:
    """Run SQL from a synchronous test (the CLI runs its own event loop, so tests are sync)."""

    async def go() -> None:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                for statement in statements:
                    await conn.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(go())


def empty_schema(url: str) -> None:
    if url.startswith("postgresql"):
        execute_sql(url, "DROP SCHEMA public CASCADE", "CREATE SCHEMA public")


@pytest.fixture
def empty_url(database_url: str, monkeypatch: pytest.MonkeyPatch, in_tmp: Path) -> str:
    """An empty database (no tables) named by DESKBOT_DATABASE_URL."""
    empty_schema(database_url)
    monkeypatch.setenv("DESKBOT_DATABASE_URL", database_url)
    return database_url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


# --------------------------------------------------------------------------------------------
# deskbot db
# --------------------------------------------------------------------------------------------


def test_db_upgrade_current_check(empty_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    head = migrate.head_revision()

    assert run(capsys, "db", "current")[:2] == (
        0,
        f"(none): no migrations applied; this code needs {head}\n",
    )
    assert run(capsys, "db", "upgrade")[:2] == (0, f"database upgraded: (empty) -> {head}\n")
    assert run(capsys, "db", "upgrade")[:2] == (0, f"database already at {head}; nothing to do\n")
    assert run(capsys, "db", "current")[:2] == (0, f"{head} (head)\n")
    assert run(capsys, "db", "check")[:2] == (0, "schema matches the models\n")


def test_db_from_a_newer_deskbot_is_named_as_such(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "db", "upgrade")
    execute_sql(empty_url, "UPDATE alembic_version SET version_num = '0099_future'")
    newer = "was it upgraded by a newer deskbot?"

    code, out, _ = run(capsys, "db", "current")
    assert code == 1 and newer in out and "run `deskbot db upgrade`" not in out
    code, out, err = run(capsys, "db", "upgrade")
    assert (code, out) == (1, "")
    assert newer in err and err.count("\n") == 1


def test_db_check_exits_1_when_schema_differs(
    empty_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "db", "upgrade")
    execute_sql(empty_url, "DROP INDEX ix_purchase_customer_time")

    code, out, _ = run(capsys, "db", "check")

    assert code == 1
    assert out.splitlines() == [
        "schema differs from the models in 1 way(s):",
        "  add_index purchase.ix_purchase_customer_time",
    ]


def test_db_option_overrides_settings(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKBOT_DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/x")
    url = f"sqlite+aiosqlite:///{in_tmp / 'other.db'}"
    assert run(capsys, "db", "upgrade", "--database-url", url)[0] == 0
    assert (in_tmp / "other.db").exists()


def test_unreachable_database_is_one_line_and_exit_1(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKBOT_DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/x")
    for command in ("upgrade", "current", "check"):
        code, out, err = run(capsys, "db", command)
        assert code == 1
        assert out == ""
        assert err.startswith("error: cannot connect to the database at postgresql+asyncpg://")
        assert err.count("\n") == 1


@pytest.mark.parametrize(
    ("url", "code", "message"),
    [
        ("not a url", 1, "error: invalid database URL “not a url”: expected e.g."),
        ("mysql+nodriver://h/db", 1, "error: invalid database URL mysql+nodriver://h/db:"),
        (
            "sqlite:///./x.db",
            1,
            "error: invalid database URL sqlite:///./x.db: write it with the asyncio driver, "
            "sqlite+aiosqlite:///./x.db\n",
        ),
        (
            "postgresql://u:secret@h/db",
            1,
            "error: invalid database URL postgresql://u:***@h/db: write it with the asyncio "
            "driver, postgresql+asyncpg://u:***@h/db\n",
        ),
        ("mysql+aiomysql://h/db", 1, "error: invalid database URL mysql+aiomysql://h/db: deskbot"),
        ("sqlite+aiosqlite://", 2, "error: an in-memory SQLite database vanishes"),
    ],
)
def test_unusable_database_url(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], url: str, code: int, message: str
) -> None:
    for command in ("upgrade", "current", "check"):
        result, out, err = run(capsys, "db", command, "--database-url", url)
        assert (result, out) == (code, "")
        assert err.startswith(message)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("garbage", "DESKBOT_DATABASE_URL: not a database URL; expected e.g. sqlite+aiosqlite"),
        ("postgresql://u:secret@h/db", "postgresql+asyncpg://u:***@h/db"),
    ],
)
def test_a_bad_database_url_setting_is_a_bad_setting(
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    message: str,
) -> None:
    monkeypatch.setenv("DESKBOT_DATABASE_URL", url)
    for argv in (["db", "current"], ["import", "customers", "c.csv"]):
        code, out, err = run(capsys, *argv)
        assert (code, out) == (2, "")
        assert message in err and "secret" not in err


def test_bad_settings_exit_2(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKBOT_SUPERVISOR_IDS", "alice")
    code, _, err = run(capsys, "db", "current")
    assert code == 2
    assert "DESKBOT_SUPERVISOR_IDS" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["db", "--help"],
        ["db", "upgrade", "--help"],
        ["db", "current", "--help"],
        ["db", "check", "--help"],
        ["db", "stamp", "--help"],
        ["import", "--help"],
        ["import", "customers", "--help"],
        ["import", "purchases", "--help"],
    ],
)
def test_help(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0
    assert "usage: deskbot" in capsys.readouterr().out


# --------------------------------------------------------------------------------------------
# deskbot import
# --------------------------------------------------------------------------------------------


def test_import_customers_then_purchases(
    empty_url: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "db", "upgrade")
    (in_tmp / "c.csv").write_text("id,name,email,notes\nC1,Ada,ada@example.com,x\n")
    (in_tmp / "p.csv").write_text(
        "customer_id,amount,date,order_id\nC1,9.99,2024-01-01,O1\nC7,1,2024-01-01,O2\n"
    )

    code, out, _ = run(capsys, "import", "customers", "c.csv")
    assert code == 0
    assert out.splitlines() == [
        "ignored columns: notes",
        "customers imported: 1 rows: 1 created, 0 updated, 0 unchanged, 0 rejected",
    ]

    code, out, _ = run(capsys, "import", "purchases", "p.csv", "--report", "rejected.csv")
    assert code == 3  # imported, with a rejected row
    assert out.splitlines() == [
        "line 3: unknown customer (external_id “C7”); import the customers first",
        "all 1 rejected rows written to rejected.csv",
        "purchases imported: 2 rows: 1 created, 0 updated, 0 unchanged, 1 rejected",
    ]
    assert (in_tmp / "rejected.csv").read_text().splitlines() == [
        "line,reason",
        "3,unknown customer (external_id “C7”); import the customers first",
    ]

    code, out, _ = run(capsys, "import", "purchases", "p.csv")
    assert code == 3
    assert out.splitlines()[-1] == (
        "purchases imported: 2 rows: 0 created, 0 updated, 1 unchanged, 1 rejected"
    )


def test_import_with_an_unwritable_report_imports_nothing(
    empty_url: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "db", "upgrade")
    (in_tmp / "c.csv").write_text("email\nok@example.com\nbroken\n")

    code, out, err = run(capsys, "import", "customers", "c.csv", "--report", "no/such/dir.csv")

    assert (code, out) == (1, "")
    assert err.startswith("error: cannot write the report no/such/dir.csv")
    code, out, _ = run(capsys, "import", "customers", "c.csv", "--dry-run")
    assert "1 created" in out  # the first run wrote nothing


def test_import_strict_imports_nothing_and_exits_1(
    empty_url: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "db", "upgrade")
    (in_tmp / "c.csv").write_text("email\nok@example.com\nbroken\n")

    code, out, _ = run(capsys, "import", "customers", "c.csv", "--strict")

    assert code == 1
    assert out.splitlines() == [
        "line 3: invalid e-mail “broken”",
        "customers NOT imported (--strict and rows were rejected): "
        "2 rows: 1 created, 0 updated, 0 unchanged, 1 rejected",
    ]
    code, out, _ = run(capsys, "import", "customers", "c.csv", "--dry-run")
    assert code == 3
    assert "dry run, nothing written" in out


def test_import_lists_the_first_rejected_rows_only(
    empty_url: str, in_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run(capsys, "db", "upgrade")
    (in_tmp / "c.csv").write_text("email\n" + "".join(f"bad{n}\n" for n in range(25)))

    code, out, _ = run(capsys, "import", "customers", "c.csv")

    lines = out.splitlines()
    assert code == 3
    assert len(lines) == 22
    assert lines[20] == "... and 5 more rejected rows (list them all with --report FILE.csv)"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"{}", "looks like JSON"),
        (b"a,b\n1,2\n", "no usable column"),
    ],
)
def test_import_of_a_bad_file_is_one_error_line(
    empty_url: str,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    content: bytes,
    message: str,
) -> None:
    run(capsys, "db", "upgrade")
    (in_tmp / "bad.csv").write_bytes(content)

    code, out, err = run(capsys, "import", "customers", "bad.csv")

    assert code == 1
    assert out == ""
    assert err.startswith("error: bad.csv") and message in err
    assert err.count("\n") == 1


def test_import_into_unreachable_database(
    in_tmp: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DESKBOT_DATABASE_URL", "postgresql+asyncpg://nobody@127.0.0.1:1/x")
    (in_tmp / "c.csv").write_text("email\na@example.com\n")
    code, _, err = run(capsys, "import", "customers", "c.csv")
    assert code == 1
    assert err.startswith("error: cannot connect")


@pytest.mark.postgres
def test_import_refuses_a_postgres_database_behind_head(
    postgres_url: str,
    in_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    empty_schema(postgres_url)
    (in_tmp / "c.csv").write_text("email\na@example.com\n")

    code, _, err = run(capsys, "import", "customers", "c.csv", "--database-url", postgres_url)

    assert code == 1
    assert "run `deskbot db upgrade`" in err
