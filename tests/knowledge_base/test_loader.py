from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base import default_kb_dir, load_knowledge_base
from tests.knowledge_base.conftest import write_article

GOOD = "---\nid: ok\ntitle: Fine\nquestions: [one, two]\ntags: [a]\n---\n\nBody text.\n"


def _problems(directory: Path) -> dict[str, tuple[int, str]]:
    result = load_knowledge_base(directory)
    return {p.path.name: (p.line, p.reason) for p in result.problems}


def test_each_broken_file_is_reported_with_line_and_reason_and_the_rest_loads(
    tmp_path: Path,
) -> None:
    (tmp_path / "good.md").write_text(GOOD, encoding="utf-8")
    (tmp_path / "no_header.md").write_text("Just text\n", encoding="utf-8")
    (tmp_path / "unclosed.md").write_text("---\ntitle: x\nbody\n", encoding="utf-8")
    (tmp_path / "no_title.md").write_text("---\nid: t\nquestions: [q]\n---\nBody\n")
    (tmp_path / "empty_body.md").write_text("---\nid: e\ntitle: Empty\n---\n\n   \n")
    (tmp_path / "bad_yaml.md").write_text("---\nid: y\ntitle: [unclosed\n---\nBody\n")
    (tmp_path / "latin1.md").write_bytes("---\nid: l\ntitle: ok\n---\ncaf\xe9\n".encode("latin-1"))
    (tmp_path / "zz_dup.md").write_text("---\ntitle: Again\nid: ok\n---\nBody\n", encoding="utf-8")
    (tmp_path / "bad_list.md").write_text("---\nid: b\ntitle: T\nquestions: {a: 1}\n---\nB\n")

    result = load_knowledge_base(tmp_path)
    problems = {p.path.name: (p.line, p.reason) for p in result.problems}

    assert [a.id for a in result.kb.articles] == ["ok"]
    assert problems["no_header.md"][0] == 1 and "bad header" in problems["no_header.md"][1]
    assert "not closed" in problems["unclosed.md"][1]
    assert problems["no_title.md"][1] == "missing title"
    assert problems["empty_body.md"] == (
        5,
        "empty body: write the answer below the front matter",
    )
    assert problems["bad_yaml.md"][0] == 3 and "bad YAML" in problems["bad_yaml.md"][1]
    assert problems["latin1.md"][0] == 5 and "not UTF-8" in problems["latin1.md"][1]
    assert problems["zz_dup.md"][0] == 3 and "duplicate id 'ok'" in problems["zz_dup.md"][1]
    assert problems["bad_list.md"] == (4, "bad header: questions must be a list of strings")
    assert len(result.problems) == 8


def test_problem_prints_as_path_line_reason(tmp_path: Path) -> None:
    (tmp_path / "x.md").write_text("---\nid: x\n---\nBody\n", encoding="utf-8")
    (problem,) = load_knowledge_base(tmp_path).problems
    assert str(problem) == f"{tmp_path / 'x.md'}:1: missing title"


def test_article_fields_and_id_defaulting_to_file_name(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "shipping-times.md").write_text(
        "---\ntitle: Shipping\nquestions: [how long, when]\ntags: [delivery]\n"
        "language: en\n---\n\n# Answer\n",
        encoding="utf-8",
    )
    (article,) = load_knowledge_base(tmp_path).kb.articles
    assert article.id == "shipping-times"
    assert article.phrasings == ("Shipping", "how long", "when")
    assert article.tags == ("delivery",)
    assert article.language == "en"
    assert article.body == "# Answer"


def test_empty_folder_is_a_problem_and_missing_folder_an_error(tmp_path: Path) -> None:
    assert "no articles" in load_knowledge_base(tmp_path).problems[0].reason
    with pytest.raises(NotADirectoryError):
        load_knowledge_base(tmp_path / "nope")


def test_bad_settings_file_is_reported_and_defaults_are_used(tmp_path: Path) -> None:
    write_article(tmp_path, "a.md", id="a", title="A", questions=["q"])
    (tmp_path / "kb.yaml").write_text("answer_threshold: 0.2\nsuggest_threshold: 0.9\n")
    result = load_knowledge_base(tmp_path)
    assert result.problems[0].path.name == "kb.yaml"
    assert "suggest" in result.problems[0].reason
    assert result.kb.settings.answer_threshold == 0.55


def test_settings_file_and_overrides(tmp_path: Path) -> None:
    write_article(tmp_path, "a.md", id="a", title="A", questions=["q"])
    (tmp_path / "kb.yaml").write_text("answer_threshold: 0.7\nsuggest_threshold: 0.4\n")
    assert load_knowledge_base(tmp_path).kb.settings.answer_threshold == 0.7
    overridden = load_knowledge_base(tmp_path, answer_threshold=0.8, suggest_threshold=0.1)
    assert overridden.kb.settings.answer_threshold == 0.8
    assert overridden.kb.settings.suggest_threshold == 0.1
    with pytest.raises(ValueError):
        load_knowledge_base(tmp_path, suggest_threshold=0.9)


def test_bundled_sample_is_clean_and_realistic() -> None:
    result = load_knowledge_base(default_kb_dir())
    assert result.problems == []
    assert 30 <= len(result.kb) <= 60
    assert result.kb.languages == ["en", "de"]
    assert all(5 <= len(a.phrasings) <= 11 for a in result.kb.articles)
    assert (default_kb_dir() / "kb.yaml").is_file()
