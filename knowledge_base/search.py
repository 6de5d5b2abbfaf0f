"""Lexical question matching: TF-IDF over words and character n-grams (term weighting, typo
tolerance), a linear classifier over articles trained on their phrasings, the nearest phrasing
by cosine, and rapidfuzz edit similarity on a shortlist. The three signals are blended into one
confidence in [0, 1] that the verdict thresholds apply to."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from rapidfuzz import fuzz
from rapidfuzz import process as fuzz_process

if TYPE_CHECKING:
    from sklearn.svm import LinearSVC

from knowledge_base.models import Article
from knowledge_base.normalize import normalize_text

# Training one-vs-rest costs ~ articles x phrasings; above this the classifier is skipped and
# the nearest-phrasing and fuzzy signals carry the ranking alone (load time stays in seconds).
CLASSIFIER_BUDGET = 4_000_000
FUZZY_SHORTLIST = 40  # phrasings re-scored with rapidfuzz per question


@dataclass(frozen=True)
class BlendWeights:
    classifier: float = 0.5
    nearest: float = 0.3
    fuzzy: float = 0.2
    temperature: float = 8.0  # sharpness of the softmax over classifier margins


class SearchIndex:
    """Built once per knowledge-base version; ``rank`` is read-only and thread-safe."""

    def __init__(
        self,
        articles: Sequence[Article],
        *,
        weights: BlendWeights | None = None,
        use_classifier: bool | None = None,
    ) -> None:
        # Imported here: scikit-learn takes seconds to import, and only building an index needs it.
        import scipy.sparse as sp
        from sklearn.exceptions import ConvergenceWarning
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize
        from sklearn.svm import LinearSVC

        self._hstack = sp.hstack
        self._csr = sp.csr_matrix
        self._normalize = normalize
        self.articles = tuple(articles)
        self.weights = weights or BlendWeights()
        texts: list[str] = []
        owners: list[int] = []
        starts: list[int] = []
        for index, article in enumerate(self.articles):
            starts.append(len(texts))
            phrasings = [normalize_text(p) for p in article.phrasings]
            phrasings = [p for p in dict.fromkeys(phrasings) if p] or [article.id]
            texts.extend(phrasings)
            owners.extend([index] * len(phrasings))
        self._texts = texts
        self._owners = np.asarray(owners, dtype=np.int64)
        self._starts = np.asarray(starts, dtype=np.int64)
        self._word = TfidfVectorizer(
            ngram_range=(1, 2), sublinear_tf=True, token_pattern=r"(?u)\b\w+\b", dtype=np.float32
        )
        self._char = TfidfVectorizer(
            analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True, dtype=np.float32
        )
        self._classifier: LinearSVC | None = None
        if not texts:  # an empty knowledge base answers nothing
            return
        matrix = self._fit_features(texts)
        self._matrix_t = matrix.T.tocsr()
        budget_ok = len(self.articles) * len(texts) <= CLASSIFIER_BUDGET
        wanted = budget_ok if use_classifier is None else use_classifier
        if len(self.articles) >= 2 and wanted:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                self._classifier = LinearSVC(C=1.0).fit(matrix, self._owners)
            self._coef_t = np.ascontiguousarray(self._classifier.coef_.T, dtype=np.float32)
            if len(self.articles) == 2:  # binary: sklearn keeps one column for class 1
                self._coef_t = np.hstack([-self._coef_t, self._coef_t])
                self._intercept = np.array(
                    [-self._classifier.intercept_[0], self._classifier.intercept_[0]]
                )
            else:
                self._intercept = self._classifier.intercept_.astype(np.float32)

    @property
    def has_classifier(self) -> bool:
        return self._classifier is not None

    @property
    def phrasing_count(self) -> int:
        return len(self._texts)

    def _fit_features(self, texts: list[str]) -> Any:
        words = self._word.fit_transform(texts)
        chars = self._char.fit_transform(texts)
        return self._normalize(self._hstack([words, chars]).tocsr())

    def _features(self, text: str) -> Any:
        """The query's TF-IDF row, computed directly: same values as the vectorizers'
        ``transform`` without their per-call validation overhead (a few ms per question)."""
        indices: list[np.ndarray] = []
        values: list[np.ndarray] = []
        offset = 0
        for vectorizer in (self._word, self._char):
            block_indices, block_values = _tfidf_block(vectorizer, text)
            indices.append(block_indices + offset)
            values.append(block_values)
            offset += len(vectorizer.idf_)
        all_indices = np.concatenate(indices)
        all_values = np.concatenate(values)
        norm = float(np.linalg.norm(all_values))
        if norm > 0:
            all_values /= norm
        return self._csr((all_values, all_indices, [0, len(all_indices)]), shape=(1, offset))

    def rank(self, question: str, limit: int = 3) -> list[tuple[Article, float]]:
        """Best ``limit`` articles with a confidence in [0, 1], best first."""
        text = normalize_text(question)
        if not text or not self.articles or limit <= 0:
            return []
        vector = self._features(text)
        if vector.nnz == 0:  # nothing the knowledge base has ever seen
            return []
        similarity = np.asarray((vector @ self._matrix_t).todense()).ravel()
        np.clip(similarity, 0.0, 1.0, out=similarity)
        nearest = np.maximum.reduceat(similarity, self._starts)
        fuzzy = self._fuzzy(text, similarity)
        w = self.weights
        if self._classifier is not None:
            margins = np.asarray(vector @ self._coef_t).ravel() + self._intercept
            shifted = (margins - margins.max()) * w.temperature
            probabilities = np.exp(shifted)
            probabilities /= probabilities.sum()
            blended = w.classifier * probabilities + w.nearest * nearest + w.fuzzy * fuzzy
        else:
            total = w.nearest + w.fuzzy
            blended = (w.nearest * nearest + w.fuzzy * fuzzy) / total
        count = min(limit, len(self.articles))
        top = np.argpartition(-blended, count - 1)[:count]
        top = top[np.argsort(-blended[top], kind="stable")]
        return [(self.articles[i], float(min(1.0, max(0.0, blended[i])))) for i in top]

    def _fuzzy(self, text: str, similarity: np.ndarray) -> np.ndarray:
        """Best rapidfuzz similarity per article over the phrasings closest by cosine."""
        scores = np.zeros(len(self.articles), dtype=np.float64)
        count = min(FUZZY_SHORTLIST, len(self._texts))
        shortlist = np.argpartition(-similarity, count - 1)[:count]
        choices = [self._texts[i] for i in shortlist]
        matrix = fuzz_process.cdist([text], choices, scorer=fuzz.token_sort_ratio)[0] / 100.0
        np.maximum.at(scores, self._owners[shortlist], matrix)
        return scores


def _tfidf_block(vectorizer: Any, text: str) -> tuple[np.ndarray, np.ndarray]:
    """Sublinear-tf x idf weights of ``text``'s known terms, L2-normalised (as sklearn does)."""
    analyzer = vectorizer.__dict__.get("_deskbot_analyzer")
    if analyzer is None:
        analyzer = vectorizer.__dict__["_deskbot_analyzer"] = vectorizer.build_analyzer()
    vocabulary = vectorizer.vocabulary_
    counts: dict[int, int] = {}
    for term in analyzer(text):
        column = vocabulary.get(term)
        if column is not None:
            counts[column] = counts.get(column, 0) + 1
    if not counts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float64)
    indices = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
    order = np.argsort(indices)
    indices = indices[order]
    tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))[order]
    weights = (1.0 + np.log(tf)) * vectorizer.idf_[indices]
    return indices, weights / np.linalg.norm(weights)
