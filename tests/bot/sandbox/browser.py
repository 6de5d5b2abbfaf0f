"""Headless Chromium for the browser tests: Debian's ``chromium`` driven by Playwright
(``executable_path``; Playwright's own browser download is never used). Tests skip with the
reason when it is missing, except in CI, where ``.ci/run`` installs it."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
LAUNCH_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LAPTOP = {"width": 1440, "height": 900}


def require_chromium() -> None:
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium); .ci/run installs it in CI"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    try:
        import playwright  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """A browser context the size of a laptop screen."""
    require_chromium()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=LAUNCH_ARGS, headless=True
        )
        try:
            context = await browser.new_context(viewport=LAPTOP)
            yield context
        finally:
            await browser.close()


def artifacts_dir(name: str) -> Path:
    """Where screenshots are kept: ``$DESKBOT_TEST_ARTIFACTS/<name>``, else
    ``test-artifacts/<name>`` at the repository root (gitignored), emptied first."""
    root = os.environ.get("DESKBOT_TEST_ARTIFACTS")
    base = Path(root) if root else Path(__file__).resolve().parents[3] / "test-artifacts"
    folder = base / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder
