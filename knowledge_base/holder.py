"""Reload without restart: the holder serves the current knowledge base and swaps in a new
version only when it loaded without a single problem."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

from knowledge_base.base import KnowledgeBase
from knowledge_base.loader import default_kb_dir, load_knowledge_base
from knowledge_base.models import Problem


@dataclass(frozen=True)
class ReloadResult:
    applied: bool  # True: the new version is live; False: the previous one is still served
    problems: list[Problem] = field(default_factory=list)
    article_count: int = 0  # articles now served

    def summary(self) -> str:
        if self.applied:
            return f"knowledge base reloaded: {self.article_count} articles"
        return (
            f"knowledge base NOT reloaded ({len(self.problems)} problem(s)); "
            f"still serving the previous {self.article_count} articles"
        )


class KnowledgeBaseHolder:
    """Holds the live :class:`KnowledgeBase`. Construct with :meth:`load`; call :meth:`reload`
    from a command or SIGHUP. Thresholds given here override the folder's ``kb.yaml``."""

    def __init__(
        self,
        kb: KnowledgeBase,
        path: Path,
        *,
        answer_threshold: float | None = None,
        suggest_threshold: float | None = None,
        semantic: bool | None = None,
        cache_dir: Path | None = None,
    ) -> None:
        self._kb = kb
        self.cache_dir = cache_dir
        self.path = path
        self.answer_threshold = answer_threshold
        self.suggest_threshold = suggest_threshold
        self.semantic = semantic
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        path: Path | None = None,
        *,
        answer_threshold: float | None = None,
        suggest_threshold: float | None = None,
        semantic: bool | None = None,
        cache_dir: Path | None = None,
    ) -> tuple[KnowledgeBaseHolder, list[Problem]]:
        """First load (``path`` None = bundled sample). Problems are returned, not fatal: the
        broken files are left out so the desk still starts."""
        directory = path or default_kb_dir()
        result = load_knowledge_base(
            directory,
            answer_threshold=answer_threshold,
            suggest_threshold=suggest_threshold,
            semantic=semantic,
            cache_dir=cache_dir,
        )
        holder = cls(
            result.kb.prepare(),
            directory,
            answer_threshold=answer_threshold,
            suggest_threshold=suggest_threshold,
            semantic=semantic,
            cache_dir=cache_dir,
        )
        return holder, result.problems

    @property
    def kb(self) -> KnowledgeBase:
        return self._kb

    def reload(self) -> ReloadResult:
        """Load the folder again; swap only if there is no problem at all (blocking: run it in
        a thread from async code, e.g. ``await asyncio.to_thread(holder.reload)``)."""
        with self._lock:
            try:
                result = load_knowledge_base(
                    self.path,
                    answer_threshold=self.answer_threshold,
                    suggest_threshold=self.suggest_threshold,
                    semantic=self.semantic,
                    cache_dir=self.cache_dir,
                )
            except (OSError, ValueError) as error:
                problem = Problem(self.path, 0, str(error))
                return ReloadResult(False, [problem], len(self._kb))
            if result.problems:
                return ReloadResult(False, result.problems, len(self._kb))
            self._kb = result.kb.prepare()
            return ReloadResult(True, [], len(self._kb))
