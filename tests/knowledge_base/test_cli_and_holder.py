from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from knowledge_base import KnowledgeBaseHolder, default_kb_dir
from tests.knowledge_base.conftest import write_article


def test_check_passes_on_the_sample(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "check", str(default_kb_dir())]) == 0
    assert capsys.readouterr().out.startswith("ok: 52 article(s)")


def test_check_lists_problems_and_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_article(tmp_path, "a.md", id="a", title="A", questions=["q"])
    (tmp_path / "b.md").write_text("no header\n", encoding="utf-8")
    assert main(["kb", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert f"{tmp_path / 'b.md'}:1: bad header" in out
    assert "1 problem(s); 1 article(s) loaded" in out


def test_check_on_a_missing_folder_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kb", "check", str(tmp_path / "missing")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_ask_prints_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["kb", "ask", "I forgot my password"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("verdict: answer") and "reset-password" in out


def test_reload_swaps_on_success_and_keeps_the_old_version_on_error(tmp_path: Path) -> None:
    write_article(tmp_path, "a.md", id="a", title="Opening hours", questions=["when are you open"])
    holder, problems = KnowledgeBaseHolder.load(tmp_path)
    assert problems == [] and len(holder.kb) == 1

    write_article(tmp_path, "b.md", id="b", title="Refund policy", questions=["money back"])
    result = holder.reload()
    assert result.applied and result.article_count == 2
    assert holder.kb.search("refund policy").candidates[0].article.id == "b"

    (tmp_path / "c.md").write_text("---\ntitle: broken\n", encoding="utf-8")
    write_article(tmp_path, "d.md", id="d", title="New article", questions=["new"])
    failed = holder.reload()
    assert not failed.applied
    assert [p.path.name for p in failed.problems] == ["c.md"]
    assert "NOT reloaded" in failed.summary()
    assert [a.id for a in holder.kb.articles] == ["a", "b"]  # still the previous version

    (tmp_path / "c.md").unlink()
    assert holder.reload().applied and len(holder.kb) == 3


def test_holder_applies_threshold_overrides_on_every_load(tmp_path: Path) -> None:
    write_article(tmp_path, "a.md", id="a", title="Opening hours", questions=["when"])
    holder, _ = KnowledgeBaseHolder.load(tmp_path, answer_threshold=0.9, suggest_threshold=0.2)
    assert holder.kb.settings.answer_threshold == 0.9
    holder.reload()
    assert holder.kb.settings.suggest_threshold == 0.2


def test_holder_defaults_to_the_bundled_sample() -> None:
    holder, problems = KnowledgeBaseHolder.load()
    assert problems == [] and holder.path == default_kb_dir() and len(holder.kb) == 52
