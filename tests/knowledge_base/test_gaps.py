"""Grouping unanswered questions for the supervisors' gaps report."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.cli import main
from knowledge_base.gaps import GapFileError, GapQuestion, group_gaps, read_gap_file

QUESTIONS = [
    "do you ship to Mars",
    "can you deliver to the moon",
    "do you sell shoes",
    "are there any running shoes",
    "I want to buy sneakers",
    "what's the weather tomorrow",
    "will it rain today",
    "do you deliver to space stations",
]


def test_similar_questions_land_in_one_group_biggest_first() -> None:
    groups = group_gaps(QUESTIONS)
    as_sets = [{q.text for q in g.questions} for g in groups]
    assert {"do you sell shoes", "are there any running shoes", "I want to buy sneakers"} in as_sets
    assert {"what's the weather tomorrow", "will it rain today"} in as_sets
    assert [g.count for g in groups] == sorted((g.count for g in groups), reverse=True)
    assert sum(g.count for g in groups) == len(QUESTIONS)


def test_groups_carry_verdicts_and_the_articles_offered() -> None:
    groups = group_gaps(
        [
            GapQuestion("when do I get my money back", "suggest", ("how-to-return",)),
            GapQuestion("when will my money come back", "none"),
            GapQuestion("my money back when", "suggest", ("how-to-return", "refund-status")),
        ],
        threshold=0.2,
    )
    assert len(groups) == 1
    assert groups[0].verdicts == {"suggest": 2, "none": 1}
    assert groups[0].candidates == ("how-to-return",)


def test_empty_and_blank_questions_give_no_groups() -> None:
    assert group_gaps([]) == []
    assert group_gaps(["   ", "?!"]) == []
    (single,) = group_gaps(["do you sell shoes"])
    assert single.count == 1 and single.representative == "do you sell shoes"


def test_gap_file_reads_csv_with_columns_or_plain_lines(tmp_path: Path) -> None:
    csv_file = tmp_path / "gaps.csv"
    csv_file.write_text(
        "text,verdict,candidates\nwhere is my money,suggest,refund-status;how-to-return\n",
        encoding="utf-8",
    )
    (question,) = read_gap_file(csv_file)
    assert question == GapQuestion(
        "where is my money", "suggest", ("refund-status", "how-to-return")
    )
    plain = tmp_path / "gaps.txt"
    plain.write_text("first question\n\nsecond question\n", encoding="utf-8")
    assert [q.text for q in read_gap_file(plain)] == ["first question", "second question"]
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    with pytest.raises(GapFileError, match="no questions"):
        read_gap_file(tmp_path / "empty.txt")


def test_kb_gaps_command_lists_groups(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "gaps.txt"
    source.write_text("\n".join(QUESTIONS), encoding="utf-8")
    assert main(["kb", "gaps", "--from", str(source)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{len(QUESTIONS)} question(s) in ")
    assert "3x" in out


def test_kb_gaps_command_explains_a_missing_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["kb", "gaps", "--from", str(tmp_path / "nope.csv")]) == 2
    assert "no such file" in capsys.readouterr().err
