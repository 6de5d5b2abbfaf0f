"""The knowledge base: articles, their settings and the search over them (one index per
article language; a question is answered from the articles of its own language)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cached_property
from pathlib import Path

from knowledge_base.language import base_code, detect_language
from knowledge_base.models import Article, Candidate, SearchResult, Verdict
from knowledge_base.search import SearchIndex
from knowledge_base.settings import KbSettings

MAX_SUGGESTIONS = 3


class KnowledgeBase:
    def __init__(
        self,
        articles: Iterable[Article],
        settings: KbSettings | None = None,
        *,
        source: Path | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self.articles: tuple[Article, ...] = tuple(articles)
        self.settings = settings or KbSettings()
        self.source = source  # the folder it was loaded from: names its embedding cache
        self.cache_dir = cache_dir
        self._by_id = {article.id: article for article in self.articles}

    def __len__(self) -> int:
        return len(self.articles)

    def get(self, article_id: str) -> Article | None:
        return self._by_id.get(article_id)

    def language_of(self, article: Article) -> str:
        return article.language or self.settings.language

    @property
    def languages(self) -> list[str]:
        """The languages articles are written in, the default one first."""
        found = {self.language_of(a) for a in self.articles} or {self.settings.language}
        return sorted(found, key=lambda code: (code != self.settings.language, code))

    @cached_property
    def indexes(self) -> dict[str, SearchIndex]:
        by_language: dict[str, list[Article]] = {code: [] for code in self.languages}
        for article in self.articles:
            by_language[self.language_of(article)].append(article)
        return {code: self._build(code, articles) for code, articles in by_language.items()}

    def _build(self, language: str, articles: list[Article]) -> SearchIndex:
        if not self.settings.semantic:
            return SearchIndex(articles)
        from knowledge_base.embeddings import EmbeddingCache, default_cache_dir, shared_encoder

        encoder = shared_encoder()
        where = str(self.source.resolve()) if self.source is not None else "unnamed"
        cache = EmbeddingCache(
            self.cache_dir or default_cache_dir(), f"{encoder.model_id}-{language}-{where}"
        )
        return SearchIndex(articles, encoder=encoder, cache=cache)

    @property
    def index(self) -> SearchIndex:
        """The default language's index (single-language knowledge bases, benchmarks)."""
        return self.indexes[self.languages[0]]

    def prepare(self) -> KnowledgeBase:
        """Build the search indexes (and load the language detector) now, not on the first
        question; returns self."""
        _ = self.indexes
        if len(self.languages) > 1:
            self.question_language("warm up")
        return self

    def with_thresholds(
        self, *, answer_threshold: float | None = None, suggest_threshold: float | None = None
    ) -> KnowledgeBase:
        """A copy sharing the built indexes, with other thresholds (e.g. env overrides)."""
        settings = self.settings.with_overrides(
            answer_threshold=answer_threshold, suggest_threshold=suggest_threshold
        )
        copy = KnowledgeBase(self.articles, settings, source=self.source, cache_dir=self.cache_dir)
        if "indexes" in self.__dict__:
            copy.__dict__["indexes"] = self.indexes
        return copy

    def question_language(self, question: str, hint: str | None = None) -> str:
        """The language ``question`` is answered in: detected among the articles' languages;
        ``hint`` (e.g. the customer's Telegram language) decides when detection is unsure."""
        language, _ = detect_language(
            question, self.languages, hint=base_code(hint), default=self.settings.language
        )
        return language

    def rank(
        self, question: str, limit: int = 3, *, language: str | None = None
    ) -> list[Candidate]:
        """The ``limit`` best articles of ``language`` (default: the question's) whatever
        their confidence (evaluation, debugging)."""
        code = language or self.question_language(question)
        index = self.indexes.get(code)
        if index is None:
            return []
        return [Candidate(a, c) for a, c in index.rank(question, limit)]

    def search(
        self, question: str, limit: int = MAX_SUGGESTIONS, *, hint: str | None = None
    ) -> SearchResult:
        """answer: ``candidates[0]`` is the reply (others: see also); suggest: up to ``limit``
        candidates above the suggest threshold; none: no candidates. ``result.language`` is
        the language the conversation should continue in."""
        language = self.question_language(question, hint)
        ranked = self.rank(question, max(limit, 1), language=language)
        return self.decide(question, ranked, limit, language=language)

    def decide(
        self, question: str, ranked: list[Candidate], limit: int, *, language: str | None = None
    ) -> SearchResult:
        """The verdict for already ranked candidates (shared by search and evaluation)."""
        answer_at = self.settings.answer_threshold
        suggest_at = self.settings.suggest_threshold
        if ranked and ranked[0].confidence >= answer_at:
            return SearchResult(question, Verdict.ANSWER, tuple(ranked[:limit]), language)
        suggestions = tuple(c for c in ranked[:limit] if c.confidence >= suggest_at)
        if suggestions:
            return SearchResult(question, Verdict.SUGGEST, suggestions, language)
        return SearchResult(question, Verdict.NONE, (), language)
