"""Lexical question matching: TF-IDF over words and character n-grams (term weighting, typo
tolerance), a linear classifier over articles trained on their phrasings, the nearest phrasing
by cosine, and rapidfuzz edit similarity on a shortlist. The three signals are blended into one
confidence in [0, 1] that the verdict thresholds apply to."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

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
MAX_SEMANTIC_CHARS = 500  # the encoder reads at most 128 tokens anyway


class Encoder(Protocol):
    """Sentence embeddings, rows L2-normalised (e.g. ``embeddings.MiniLMEncoder``)."""

    def encode(self, texts: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class BlendWeights:
    classifier: float = 0.5
    nearest: float = 0.3
    fuzzy: float = 0.2
    temperature: float = 8.0  # sharpness of the softmax over classifier margins
    # Used only with an encoder (the optional semantic extra); the lexical part is scaled by
    # 1 - semantic_nearest - semantic_classifier.
    semantic_nearest: float = 0.0
    semantic_classifier: float = 0.0


# Chosen on CLINC150 val (0.25/0.25, 0.3/0.3, 0.35/0.35 tried): see bench/README_kb.md.
SEMANTIC_WEIGHTS = BlendWeights(semantic_nearest=0.3, semantic_classifier=0.3)


class SearchIndex:
    """Built once per knowledge-base version; ``rank`` is read-only and thread-safe."""

    def __init__(
        self,
        articles: Sequence[Article],
        *,
        weights: BlendWeights | None = None,
        use_classifier: bool | None = None,
        encoder: Encoder | None = None,
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
        self.weights = weights or (SEMANTIC_WEIGHTS if encoder is not None else BlendWeights())
        self._encoder = encoder
        texts: list[str] = []
        originals: list[str] = []
        owners: list[int] = []
        starts: list[int] = []
        for index, article in enumerate(self.articles):
            starts.append(len(texts))
            unique = {normalize_text(p): p for p in reversed(article.phrasings)}
            pairs = [(n, o) for n, o in reversed(unique.items()) if n] or [(article.id, article.id)]
            texts.extend(n for n, _ in pairs)
            originals.extend(o for _, o in pairs)
            owners.extend([index] * len(pairs))
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
        if encoder is not None:
            self._build_semantic(encoder, originals, LinearSVC)

    def _build_semantic(self, encoder: Encoder, originals: list[str], svm: Any) -> None:
        """Embed every phrasing once; a linear classifier over articles on the embeddings."""
        self._embeddings = np.asarray(encoder.encode(originals), dtype=np.float32)
        self._semantic_coef_t: np.ndarray | None = None
        if len(self.articles) > 2:
            model = svm(C=1.0).fit(self._embeddings, self._owners)
            self._semantic_coef_t = np.ascontiguousarray(model.coef_.T, dtype=np.float32)
            self._semantic_intercept = model.intercept_.astype(np.float32)

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
        # float32 like the index: a float64 query would upcast the whole matrix on every call
        data = all_values.astype(np.float32)
        return self._csr((data, all_indices, [0, len(all_indices)]), shape=(1, offset))

    def rank(self, question: str, limit: int = 3) -> list[tuple[Article, float]]:
        """Best ``limit`` articles with a confidence in [0, 1], best first."""
        text = normalize_text(question)
        if not text or not self.articles or limit <= 0:
            return []
        vector = self._features(text)
        if vector.nnz == 0:  # nothing the knowledge base has ever seen
            return []
        # only the query's term rows, then one mat-vec: ~2x faster than a sparse product
        similarity = np.asarray(self._matrix_t[vector.indices].T.dot(vector.data)).ravel()
        np.clip(similarity, 0.0, 1.0, out=similarity)
        nearest = np.maximum.reduceat(similarity, self._starts)
        fuzzy = self._fuzzy(text, similarity)
        w = self.weights
        if self._classifier is not None:
            margins = np.asarray(vector @ self._coef_t).ravel() + self._intercept
            probabilities = _softmax(margins, w.temperature)
            blended = w.classifier * probabilities + w.nearest * nearest + w.fuzzy * fuzzy
        else:
            total = w.nearest + w.fuzzy
            blended = (w.nearest * nearest + w.fuzzy * fuzzy) / total
        if self._encoder is not None:
            blended = self._with_semantic(question, blended)
        count = min(limit, len(self.articles))
        top = np.argpartition(-blended, count - 1)[:count]
        top = top[np.argsort(-blended[top], kind="stable")]
        return [(self.articles[i], float(min(1.0, max(0.0, blended[i])))) for i in top]

    def _with_semantic(self, question: str, lexical: np.ndarray) -> np.ndarray:
        assert self._encoder is not None
        w = self.weights
        query = np.asarray(self._encoder.encode([question[:MAX_SEMANTIC_CHARS]]))[0]
        similarity = np.clip(self._embeddings @ query, 0.0, 1.0)
        nearest = np.maximum.reduceat(similarity, self._starts)
        semantic_share = w.semantic_nearest + w.semantic_classifier
        blended = (1.0 - semantic_share) * lexical + w.semantic_nearest * nearest
        if self._semantic_coef_t is not None:
            blended += w.semantic_classifier * _softmax(
                query @ self._semantic_coef_t + self._semantic_intercept, w.temperature
            )
        else:
            blended += w.semantic_classifier * nearest
        return blended

    def _fuzzy(self, text: str, similarity: np.ndarray) -> np.ndarray:
        """Best rapidfuzz similarity per article over the phrasings closest by cosine."""
        scores = np.zeros(len(self.articles), dtype=np.float64)
        count = min(FUZZY_SHORTLIST, len(self._texts))
        shortlist = np.argpartition(-similarity, count - 1)[:count]
        choices = [self._texts[i] for i in shortlist]
        matrix = fuzz_process.cdist([text], choices, scorer=fuzz.token_sort_ratio)[0] / 100.0
        np.maximum.at(scores, self._owners[shortlist], matrix)
        return scores


def _softmax(margins: np.ndarray, temperature: float) -> np.ndarray:
    shifted = np.exp((margins - margins.max()) * temperature)
    result: np.ndarray = shifted / shifted.sum()
    return result


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
