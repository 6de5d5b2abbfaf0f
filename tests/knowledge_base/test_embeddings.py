"""The optional semantic extra; skipped when it is not installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from knowledge_base import Article, load_knowledge_base
from knowledge_base.embeddings import embeddings_available
from knowledge_base.search import SearchIndex
from tests.knowledge_base.conftest import write_article


def test_semantic_without_the_extra_is_reported(tmp_path: Path) -> None:
    write_article(tmp_path, "a.md", id="a", title="A", questions=["q"])
    result = load_knowledge_base(tmp_path, semantic=True)
    if embeddings_available():
        assert result.problems == [] and result.kb.settings.semantic
    else:
        assert "optional extra" in result.problems[0].reason
        assert not result.kb.settings.semantic


needs_extra = pytest.mark.skipif(not embeddings_available(), reason="embeddings extra missing")


@needs_extra
def test_encoder_puts_paraphrases_close() -> None:
    from knowledge_base.embeddings import shared_encoder

    vectors = shared_encoder().encode(
        ["How do I reset my password?", "I forgot my password", "Where is my parcel?"]
    )
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.6 > similarity[0, 2]


@needs_extra
def test_semantic_index_matches_a_paraphrase_without_shared_words() -> None:
    from knowledge_base.embeddings import shared_encoder

    articles = [
        Article(id="lost", title="Lost parcel", body="x", questions=("package never arrived",)),
        Article(id="pay", title="Payment methods", body="x", questions=("can I pay by card",)),
        Article(id="pw", title="Reset password", body="x", questions=("forgot my password",)),
    ]
    index = SearchIndex(articles, encoder=shared_encoder())
    assert index.rank("my shipment went missing", 1)[0][0].id == "lost"
