"""Knowledge base: Markdown articles with front matter, loading with per-file problems,
lexical + semantic search with answer/suggest/none verdicts in the question's language,
Telegram-HTML rendering and splitting, evaluation and threshold tuning, knowledge-gap
grouping. No Telegram dependency."""

from knowledge_base.base import KnowledgeBase
from knowledge_base.gaps import GapGroup, GapQuestion, group_gaps
from knowledge_base.holder import KnowledgeBaseHolder, ReloadResult
from knowledge_base.loader import LoadResult, default_kb_dir, load_knowledge_base
from knowledge_base.models import Article, Candidate, Problem, SearchResult, Verdict
from knowledge_base.render import render_answer, render_telegram_html
from knowledge_base.settings import KbSettings
from knowledge_base.split import TELEGRAM_MESSAGE_LIMIT, split_telegram_html

__all__ = [
    "TELEGRAM_MESSAGE_LIMIT",
    "Article",
    "Candidate",
    "GapGroup",
    "GapQuestion",
    "KbSettings",
    "KnowledgeBase",
    "KnowledgeBaseHolder",
    "LoadResult",
    "Problem",
    "ReloadResult",
    "SearchResult",
    "Verdict",
    "default_kb_dir",
    "group_gaps",
    "load_knowledge_base",
    "render_answer",
    "render_telegram_html",
    "split_telegram_html",
]
