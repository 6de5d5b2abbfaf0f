"""The knowledge base: articles, their settings and the search over them."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property

from knowledge_base.models import Article, Candidate, SearchResult, Verdict
from knowledge_base.search import SearchIndex
from knowledge_base.settings import KbSettings

MAX_SUGGESTIONS = 3


class KnowledgeBase:
    def __init__(self, articles: Iterable[Article], settings: KbSettings | None = None) -> None:
        self.articles: tuple[Article, ...] = tuple(articles)
        self.settings = settings or KbSettings()
        self._by_id = {article.id: article for article in self.articles}

    def __len__(self) -> int:
        return len(self.articles)

    def get(self, article_id: str) -> Article | None:
        return self._by_id.get(article_id)

    @cached_property
    def index(self) -> SearchIndex:
        if self.settings.semantic:
            from knowledge_base.embeddings import shared_encoder

            return SearchIndex(self.articles, encoder=shared_encoder())
        return SearchIndex(self.articles)

    def prepare(self) -> KnowledgeBase:
        """Build the search index now (not on the first question); returns self."""
        _ = self.index
        return self

    def with_thresholds(
        self, *, answer_threshold: float | None = None, suggest_threshold: float | None = None
    ) -> KnowledgeBase:
        """A copy sharing the built index, with other thresholds (e.g. env overrides)."""
        settings = self.settings.with_overrides(
            answer_threshold=answer_threshold, suggest_threshold=suggest_threshold
        )
        copy = KnowledgeBase(self.articles, settings)
        if "index" in self.__dict__:
            copy.__dict__["index"] = self.index
        return copy

    def rank(self, question: str, limit: int = 3) -> list[Candidate]:
        """The ``limit`` best articles whatever their confidence (evaluation, debugging)."""
        return [Candidate(a, c) for a, c in self.index.rank(question, limit)]

    def search(self, question: str, limit: int = MAX_SUGGESTIONS) -> SearchResult:
        """answer: ``candidates[0]`` is the reply (others: see also); suggest: up to ``limit``
        candidates above the suggest threshold; none: no candidates."""
        return self.decide(question, self.rank(question, max(limit, 1)), limit)

    def decide(self, question: str, ranked: list[Candidate], limit: int) -> SearchResult:
        """The verdict for already ranked candidates (shared by search and evaluation)."""
        answer_at = self.settings.answer_threshold
        suggest_at = self.settings.suggest_threshold
        if ranked and ranked[0].confidence >= answer_at:
            return SearchResult(question, Verdict.ANSWER, tuple(ranked[:limit]))
        suggestions = tuple(c for c in ranked[:limit] if c.confidence >= suggest_at)
        if suggestions:
            return SearchResult(question, Verdict.SUGGEST, suggestions)
        return SearchResult(question, Verdict.NONE, ())
