"""Without a PostgreSQL server the PostgreSQL half of the suite skips with the reason, except
under CI=true, where it fails: CI must never pass on SQLite alone."""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run_postgres_tests(ci: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["DESKBOT_TEST_POSTGRES_URL"] = (
        f"postgresql+asyncpg://postgres@127.0.0.1:{_closed_port()}/test"
    )
    if ci is not None:
        env["CI"] = ci
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    command += ["tests/crm_core/test_references.py", "-m", "postgres"]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_unreachable_postgres_skips_with_the_reason_outside_ci() -> None:
    result = _run_postgres_tests(ci=None)
    assert result.returncode == 0, result.stdout
    assert "skipped" in result.stdout and "unreachable" in result.stdout
    assert "passed" not in result.stdout


@pytest.mark.parametrize("ci", ["true", "1"])
def test_unreachable_postgres_fails_under_ci(ci: str) -> None:
    result = _run_postgres_tests(ci=ci)
    assert result.returncode == 1, result.stdout
    assert "CI=true: PostgreSQL tests must run" in result.stdout
    assert "skipped" not in result.stdout
