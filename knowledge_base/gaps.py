"""Knowledge gaps: questions the knowledge base could not answer (verdict none or suggest, or
an answer rated unhelpful), grouped by similarity so a supervisor sees which articles are
missing, biggest group first.

Similarity is a weighted mean of two cosines: static sentence embeddings (meaning, 0.7) and
word+character TF-IDF (wording, typos, 0.3); groups are average-linkage clusters cut at
``threshold``."""

from __future__ import annotations

import csv
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from knowledge_base.normalize import normalize_text

DEFAULT_THRESHOLD = 0.25  # weighted cosine; higher = tighter groups
SEMANTIC_SHARE = 0.7
MAX_GAP_QUESTIONS = 5000  # pairwise similarities: memory grows with the square


@dataclass(frozen=True)
class GapQuestion:
    text: str
    verdict: str = ""  # none | suggest | unhelpful | "" (unknown)
    candidates: tuple[str, ...] = ()  # article ids offered, best first


@dataclass(frozen=True)
class GapGroup:
    questions: tuple[GapQuestion, ...]  # the most typical first
    verdicts: dict[str, int] = field(default_factory=dict)
    candidates: tuple[str, ...] = ()  # most often offered article ids, most frequent first

    @property
    def count(self) -> int:
        return len(self.questions)

    @property
    def representative(self) -> str:
        return self.questions[0].text

    def examples(self, limit: int = 3) -> list[str]:
        return [q.text for q in self.questions[:limit]]


class GapFileError(Exception):
    """The questions file cannot be used; the message says why."""


def group_gaps(
    questions: Sequence[GapQuestion | str], threshold: float = DEFAULT_THRESHOLD
) -> list[GapGroup]:
    """Similar questions together, largest group first (ties: first seen first)."""
    items = [q if isinstance(q, GapQuestion) else GapQuestion(q) for q in questions]
    items = [q for q in items if normalize_text(q.text)]
    if not items:
        return []
    if len(items) > MAX_GAP_QUESTIONS:
        raise ValueError(f"at most {MAX_GAP_QUESTIONS} questions at once, got {len(items)}")
    similarity = _similarity([q.text for q in items])
    labels = _clusters(similarity, threshold)
    groups = []
    for label in dict.fromkeys(labels.tolist()):
        members = np.flatnonzero(labels == label)
        # most typical first: highest mean similarity to the rest of its group
        typical = similarity[np.ix_(members, members)].mean(axis=1)
        ordered = members[np.argsort(-typical, kind="stable")]
        chosen = tuple(items[i] for i in ordered)
        verdicts = Counter(q.verdict for q in chosen if q.verdict)
        offered = Counter(c for q in chosen for c in q.candidates[:1])
        groups.append(
            GapGroup(
                chosen,
                dict(verdicts.most_common()),
                tuple(c for c, _ in offered.most_common(3)),
            )
        )
    groups.sort(key=lambda g: -g.count)  # stable: equal sizes keep first-seen order
    return groups


def _similarity(texts: list[str]) -> np.ndarray:
    from scipy.sparse import hstack
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    normalized = [normalize_text(t) for t in texts]
    words = TfidfVectorizer(sublinear_tf=True, token_pattern=r"(?u)\b\w+\b").fit_transform(
        normalized
    )
    chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True)
    lexical = normalize(hstack([normalize(words), normalize(chars.fit_transform(normalized))]))
    lexical_similarity = np.asarray((lexical @ lexical.T).todense(), dtype=np.float64)
    try:
        from knowledge_base.embeddings import shared_encoder

        vectors = shared_encoder().encode(texts).astype(np.float64)
        semantic_similarity = vectors @ vectors.T
    except Exception:  # no model: wording alone still groups "refund?" with "my refund"
        semantic_similarity = lexical_similarity
    mixed = SEMANTIC_SHARE * semantic_similarity + (1 - SEMANTIC_SHARE) * lexical_similarity
    result: np.ndarray = np.clip(mixed, 0.0, 1.0)
    np.fill_diagonal(result, 1.0)
    return result


def _clusters(similarity: np.ndarray, threshold: float) -> np.ndarray:
    if len(similarity) == 1:
        return np.zeros(1, dtype=np.int64)
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    distance = squareform(1.0 - similarity, checks=False)
    tree = linkage(distance, method="average")
    labels: np.ndarray = fcluster(tree, t=1.0 - threshold, criterion="distance")
    return labels


def read_gap_file(path: Path) -> list[GapQuestion]:
    """Questions from a CSV with a ``text`` column (optional ``verdict`` and ``candidates``,
    the latter separated by ``;``), or from plain text, one question per line."""
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise GapFileError(f"{path}: no such file") from None
    except UnicodeDecodeError:
        raise GapFileError(f"{path}: not UTF-8 text") from None
    except OSError as error:
        raise GapFileError(f"{path}: {error.strerror or error}") from None
    lines = raw.splitlines()
    header = [c.strip().lower() for c in next(csv.reader(lines[:1]), [])]
    if "text" not in header:
        questions = [GapQuestion(line.strip()) for line in lines if line.strip()]
    else:
        try:
            rows = list(csv.DictReader(io.StringIO(raw)))
        except csv.Error as error:
            raise GapFileError(f"{path}: bad CSV: {error}") from None
        questions = []
        for row in rows:
            lowered = {(k or "").strip().lower(): (v or "") for k, v in row.items()}
            text = lowered.get("text", "").strip()
            if not text:
                continue
            candidates = tuple(
                c.strip() for c in lowered.get("candidates", "").split(";") if c.strip()
            )
            questions.append(GapQuestion(text, lowered.get("verdict", "").strip(), candidates))
    if not questions:
        raise GapFileError(f"{path}: no questions")
    return questions


def format_gaps(groups: Sequence[GapGroup], *, examples: int = 3) -> str:
    total = sum(g.count for g in groups)
    lines = [f"{total} question(s) in {len(groups)} group(s), largest first"]
    for number, group in enumerate(groups, start=1):
        details = []
        if group.verdicts:
            details.append(", ".join(f"{v} {n}" for v, n in group.verdicts.items()))
        if group.candidates:
            details.append("offered: " + ", ".join(group.candidates))
        suffix = f"  ({'; '.join(details)})" if details else ""
        lines.append(f"{number}. {group.count}x {group.representative!r}{suffix}")
        lines.extend(f"   - {text}" for text in group.examples(examples)[1:])
        if group.count > examples:
            lines.append(f"   ... and {group.count - examples} more")
    return "\n".join(lines)
