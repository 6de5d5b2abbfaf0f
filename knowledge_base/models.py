"""The knowledge base's value objects: articles, load problems and search results."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path


@dataclass(frozen=True)
class Article:
    """One answer. ``body`` is the Markdown the customer reads; ``questions`` are the
    alternative phrasings customers use to ask for it."""

    id: str
    title: str
    body: str
    questions: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    language: str | None = None  # ISO 639-1 code; None = the knowledge base's default
    path: Path | None = None
    url: str | None = None  # where the full article lives (shown under the answer)

    @property
    def phrasings(self) -> tuple[str, ...]:
        """Everything a question is matched against: the title and each phrasing."""
        return (self.title, *self.questions)


@dataclass(frozen=True)
class Problem:
    """Why one file (or the settings) could not be loaded; ``line`` is 1-based, 0 = whole file."""

    path: Path
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.reason}"


class Verdict(StrEnum):
    ANSWER = "answer"  # confident: reply with the first candidate
    SUGGEST = "suggest"  # unsure: offer the candidates
    NONE = "none"  # not covered by the knowledge base


@dataclass(frozen=True)
class Candidate:
    article: Article
    confidence: float  # in [0, 1]; comparable with the thresholds

    @property
    def score(self) -> float:
        return self.confidence


@dataclass(frozen=True)
class SearchResult:
    question: str
    verdict: Verdict
    candidates: tuple[Candidate, ...] = field(default=())
    # The language the question was answered in (its articles' language): the conversation's
    # templates follow it. None for a knowledge base without articles.
    language: str | None = None

    @property
    def best(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None
