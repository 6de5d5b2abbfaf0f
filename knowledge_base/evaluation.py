"""Measuring search quality on labelled questions (CSV ``text,expected``; empty expected =
not covered by the knowledge base) and tuning the verdict thresholds from such data."""

from __future__ import annotations

import csv
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from knowledge_base.base import KnowledgeBase
from knowledge_base.settings import KbSettings

DEFINITIONS = {
    "top1": "in-scope questions whose best-ranked article is the expected one",
    "top3": "in-scope questions whose expected article is among the 3 best-ranked",
    "answer_precision": "of all questions answered confidently (verdict answer), the share "
    "answered with the expected article (an answered out-of-scope question counts as wrong)",
    "coverage": "in-scope questions answered confidently AND with the expected article",
    "oos_recall": "out-of-scope questions (empty expected) NOT answered confidently "
    "(verdict suggest or none)",
    "p50_ms/p99_ms": "search latency per question (rank + verdict), one thread, wall clock; "
    "p99 CPU: the same in CPU time (unaffected by other processes)",
}


class QueryFileError(Exception):
    """The questions file cannot be used; the message says why and where."""


@dataclass(frozen=True)
class Query:
    text: str
    expected: str | None  # article id, None = not covered


@dataclass(frozen=True)
class ScoredQuery:
    query: Query
    ranked_ids: tuple[str, ...]
    top_confidence: float
    seconds: float
    cpu_seconds: float = 0.0  # CPU time of this thread: what latency would be on an idle core


@dataclass(frozen=True)
class EvalReport:
    questions: int
    in_scope: int
    out_of_scope: int
    top1: float | None
    top3: float | None
    answer_precision: float | None
    coverage: float | None
    oos_recall: float | None
    p50_ms: float
    p99_ms: float
    p99_cpu_ms: float
    answer_threshold: float
    suggest_threshold: float

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def read_queries(path: Path, kb: KnowledgeBase | None = None) -> list[Query]:
    """Rows of ``text,expected``; ids are checked against ``kb`` when given."""
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in reader.fieldnames or []]
            missing = [c for c in ("text", "expected") if c not in columns]
            if missing:
                raise QueryFileError(
                    f"{path}: missing column(s) {', '.join(missing)}; "
                    f"the header must be 'text,expected' (found: {','.join(columns) or 'nothing'})"
                )
            reader.fieldnames = columns
            queries = [_query(row, path, reader.line_num) for row in reader]
    except UnicodeDecodeError:
        raise QueryFileError(f"{path}: not UTF-8 text") from None
    except csv.Error as error:
        raise QueryFileError(f"{path}: bad CSV: {error}") from None
    if not queries:
        raise QueryFileError(f"{path}: no questions")
    if kb is not None:
        unknown = sorted({q.expected for q in queries if q.expected and kb.get(q.expected) is None})
        if unknown:
            shown = ", ".join(unknown[:10]) + (" ..." if len(unknown) > 10 else "")
            raise QueryFileError(f"{path}: unknown article id(s): {shown}")
    return queries


def _query(row: dict[str, str | None], path: Path, line: int) -> Query:
    text = (row.get("text") or "").strip()
    if not text:
        raise QueryFileError(f"{path}:{line}: empty text")
    expected = (row.get("expected") or "").strip()
    return Query(text, expected or None)


def score_queries(kb: KnowledgeBase, queries: Sequence[Query]) -> list[ScoredQuery]:
    kb.prepare()
    scored = []
    for query in queries:
        started = time.perf_counter()
        cpu_started = time.thread_time()
        ranked = kb.rank(query.text, 3)
        kb.decide(query.text, ranked, 3)
        cpu = time.thread_time() - cpu_started
        elapsed = time.perf_counter() - started
        scored.append(
            ScoredQuery(
                query,
                tuple(c.article.id for c in ranked),
                ranked[0].confidence if ranked else 0.0,
                elapsed,
                cpu,
            )
        )
    return scored


def summarize(
    scored: Sequence[ScoredQuery], answer_threshold: float, suggest_threshold: float
) -> EvalReport:
    inside = [s for s in scored if s.query.expected is not None]
    outside = [s for s in scored if s.query.expected is None]
    answered = [s for s in scored if s.ranked_ids and s.top_confidence >= answer_threshold]
    right = [s for s in answered if s.ranked_ids[0] == s.query.expected]
    answered_ids = {id(s) for s in answered}  # identity: a list lookup made tuning cubic
    latencies = np.array([s.seconds * 1000 for s in scored]) if scored else np.zeros(1)
    cpu = np.array([s.cpu_seconds * 1000 for s in scored]) if scored else np.zeros(1)

    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return EvalReport(
        questions=len(scored),
        in_scope=len(inside),
        out_of_scope=len(outside),
        top1=share(sum(1 for s in inside if s.ranked_ids[:1] == (s.query.expected,)), len(inside)),
        top3=share(sum(1 for s in inside if s.query.expected in s.ranked_ids[:3]), len(inside)),
        answer_precision=share(len(right), len(answered)),
        coverage=share(len(right), len(inside)),
        oos_recall=share(sum(1 for s in outside if id(s) not in answered_ids), len(outside)),
        p50_ms=float(np.percentile(latencies, 50)),
        p99_ms=float(np.percentile(latencies, 99)),
        p99_cpu_ms=float(np.percentile(cpu, 99)),
        answer_threshold=answer_threshold,
        suggest_threshold=suggest_threshold,
    )


def evaluate(kb: KnowledgeBase, queries: Sequence[Query]) -> EvalReport:
    scored = score_queries(kb, queries)
    return summarize(scored, kb.settings.answer_threshold, kb.settings.suggest_threshold)


@dataclass(frozen=True)
class TuneTargets:
    answer_precision: float = 0.95
    oos_recall: float = 0.85


def tune_thresholds(
    scored: Sequence[ScoredQuery], targets: TuneTargets | None = None
) -> tuple[KbSettings, EvalReport]:
    """Answer threshold: the lowest that meets the precision (and, with out-of-scope data, the
    out-of-scope recall) targets, which maximises coverage. Suggest threshold: with out-of-scope
    data, the one separating "right article in the top 3" from out-of-scope best; without, the
    level that keeps 95% of those right top-3 questions above it."""
    targets = targets or TuneTargets()
    levels = sorted({s.top_confidence for s in scored} | {1.0})
    answer = 1.0
    for position, level in enumerate(levels):
        report = summarize(scored, level, 0.0)
        precision_ok = (report.answer_precision or 0.0) >= targets.answer_precision
        oos_ok = report.oos_recall is None or report.oos_recall >= targets.oos_recall
        if precision_ok and oos_ok:
            # halfway to the next lower score: same decisions here, a margin for new questions
            answer = (level + levels[position - 1]) / 2 if position else level
            break
    suggest = _suggest_threshold(scored, answer)
    settings = KbSettings(answer, suggest)
    return settings, summarize(scored, answer, suggest)


def _suggest_threshold(scored: Sequence[ScoredQuery], answer: float) -> float:
    hits = np.array(
        [s.top_confidence for s in scored if s.query.expected in s.ranked_ids[:3]] or [answer]
    )
    outside = np.array([s.top_confidence for s in scored if s.query.expected is None])
    if outside.size == 0:
        return float(min(answer, np.percentile(hits, 5)))
    best, best_score = answer, -1.0
    for level in sorted(set(np.concatenate([hits, outside]).tolist())):
        if level > answer:
            break
        score = float((hits >= level).mean() + (outside < level).mean())
        if score > best_score:
            best, best_score = float(level), score
    return best
