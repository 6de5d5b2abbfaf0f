"""Reading a knowledge-base folder: every broken file is reported (path, line, reason) and
the rest is loaded, so one typo never takes the whole knowledge base down."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from knowledge_base.base import KnowledgeBase
from knowledge_base.embeddings import embeddings_available
from knowledge_base.models import Article, Problem
from knowledge_base.settings import SETTINGS_FILE, read_settings

FENCE = "---"
_LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,3}")
_WEB_URL = re.compile(r"https?://[^\s<>\"']+", re.IGNORECASE)


@dataclass(frozen=True)
class LoadResult:
    kb: KnowledgeBase
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def default_kb_dir() -> Path:
    """The bundled sample knowledge base (Northwind Goods), used when none is configured."""
    return Path(__file__).resolve().parent / "sample"


def load_knowledge_base(
    path: Path | str,
    *,
    answer_threshold: float | None = None,
    suggest_threshold: float | None = None,
    semantic: bool | None = None,
    cache_dir: Path | str | None = None,
) -> LoadResult:
    """Load every ``*.md`` under ``path`` (recursively, hidden files skipped) plus ``kb.yaml``.
    Keyword arguments override the settings file (e.g. from environment variables);
    ``cache_dir`` holds the phrasing embeddings (default: :func:`default_cache_dir`)."""
    directory = Path(path)
    if not directory.is_dir():
        raise NotADirectoryError(f"knowledge base folder not found: {directory}")
    settings, problems = read_settings(directory)
    settings = settings.with_overrides(
        answer_threshold=answer_threshold, suggest_threshold=suggest_threshold, semantic=semantic
    )
    if settings.semantic and not embeddings_available():
        reason = "semantic search needs the package 'wordllama' (a dependency): reinstall deskbot"
        problems.append(Problem(directory / SETTINGS_FILE, 0, reason))
        settings = settings.with_overrides(semantic=False)
    articles: list[Article] = []
    first_seen: dict[str, Path] = {}
    files = [p for p in sorted(directory.rglob("*.md")) if not _hidden(p, directory)]
    for file in files:
        article, problem = parse_article_file(file)
        if problem is not None:
            problems.append(problem)
            continue
        assert article is not None
        if article.id in first_seen:
            line = _key_line(file, "id")
            reason = f"duplicate id {article.id!r} (already used by {first_seen[article.id]})"
            problems.append(Problem(file, line, reason))
            continue
        first_seen[article.id] = file
        articles.append(article)
    if not files:
        problems.append(Problem(directory, 0, "no articles (*.md files) found"))
    kb = KnowledgeBase(
        articles, settings, source=directory, cache_dir=Path(cache_dir) if cache_dir else None
    )
    return LoadResult(kb, problems)


def _hidden(file: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in file.relative_to(root).parts)


def parse_article_file(file: Path) -> tuple[Article | None, Problem | None]:
    raw = file.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        return None, Problem(file, line, f"not UTF-8 text (byte {error.start})")
    try:
        return parse_article(text, path=file), None
    except ArticleError as error:
        return None, Problem(file, error.line, error.reason)


class ArticleError(Exception):
    def __init__(self, line: int, reason: str) -> None:
        super().__init__(f"line {line}: {reason}")
        self.line = line
        self.reason = reason


def parse_article(text: str, *, path: Path | None = None) -> Article:
    """Parse one article (front matter + Markdown body); raises :class:`ArticleError`."""
    lines = text.removeprefix("\ufeff").splitlines()
    if not lines or lines[0].strip() != FENCE:
        raise ArticleError(1, "bad header: the file must start with a '---' line")
    closing = next((i for i in range(1, len(lines)) if lines[i].strip() == FENCE), None)
    if closing is None:
        raise ArticleError(1, "bad header: the front matter is not closed by a '---' line")
    header_text = "\n".join(lines[1:closing])
    try:
        node = yaml.compose(header_text, Loader=yaml.SafeLoader)
        header = yaml.safe_load(header_text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = mark.line + 2 if mark is not None else 1
        raise ArticleError(line, f"bad YAML: {_yaml_reason(error)}") from None
    if header is None:
        header = {}
    if not isinstance(header, dict):
        raise ArticleError(2, "bad header: the front matter must be a mapping of key: value")
    key_lines = _mapping_key_lines(node)

    def line_of(key: str) -> int:
        return key_lines.get(key, 1)

    title = header.get("title")
    if not isinstance(title, str) or not title.strip():
        raise ArticleError(line_of("title"), "missing title")
    article_id = header.get("id", path.stem if path is not None else None)
    if isinstance(article_id, int) and not isinstance(article_id, bool):
        article_id = str(article_id)
    if not isinstance(article_id, str) or not article_id.strip():
        raise ArticleError(line_of("id"), "bad header: id must be a non-empty string")
    questions = _string_list(header, "questions", line_of("questions"))
    tags = _string_list(header, "tags", line_of("tags"))
    language = header.get("language")
    if language is not None and (
        not isinstance(language, str) or not _LANGUAGE_CODE.fullmatch(language.strip())
    ):
        reason = f"bad header: language must be a code like en or de, got {language!r}"
        raise ArticleError(line_of("language"), reason)
    url = header.get("url")
    if url is not None and (not isinstance(url, str) or not _WEB_URL.fullmatch(url.strip())):
        reason = f"bad header: url must be an http(s) address, got {url!r}"
        raise ArticleError(line_of("url"), reason)
    body = "\n".join(lines[closing + 1 :]).strip()
    if not body:
        raise ArticleError(closing + 2, "empty body: write the answer below the front matter")
    return Article(
        id=article_id.strip(),
        title=title.strip(),
        body=body,
        questions=questions,
        tags=tags,
        language=language.strip().lower() if language else None,
        path=path,
        url=url.strip() if url else None,
    )


def _string_list(header: dict[str, Any], key: str, line: int) -> tuple[str, ...]:
    value = header.get(key)
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str | int | float) for v in value):
        raise ArticleError(line, f"bad header: {key} must be a list of strings")
    return tuple(str(v).strip() for v in value if str(v).strip())


def _mapping_key_lines(node: Any) -> dict[str, int]:
    """1-based file line of each top-level key (the header starts on file line 2)."""
    if not isinstance(node, yaml.MappingNode):
        return {}
    return {
        str(key.value): key.start_mark.line + 2
        for key, _ in node.value
        if isinstance(key, yaml.ScalarNode)
    }


def _key_line(file: Path, key: str) -> int:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return 1
    for number, line in enumerate(lines, start=1):
        if line.startswith(f"{key}:"):
            return number
    return 1


def _yaml_reason(error: yaml.YAMLError) -> str:
    problem = getattr(error, "problem", None)
    context = getattr(error, "context", None)
    parts = [str(p) for p in (context, problem) if p]
    return "; ".join(parts) if parts else str(error).splitlines()[0]
