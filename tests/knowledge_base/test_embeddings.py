"""The semantic signal: the static model shipped in a wheel, and its on-disk cache."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from knowledge_base import Article, load_knowledge_base
from knowledge_base.embeddings import EmbeddingCache, embed_cached, shared_encoder
from knowledge_base.search import SearchIndex
from tests.knowledge_base.conftest import write_article


def test_encoder_puts_paraphrases_close() -> None:
    vectors = shared_encoder().encode(
        ["How do I reset my password?", "I forgot my password", "Where is my parcel?"]
    )
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > similarity[0, 2] + 0.2


def test_semantic_index_matches_a_paraphrase_without_shared_words() -> None:
    articles = [
        Article(id="lost", title="Lost parcel", body="x", questions=("package never arrived",)),
        Article(id="pay", title="Payment methods", body="x", questions=("can I pay by card",)),
        Article(id="pw", title="Reset password", body="x", questions=("forgot my password",)),
    ]
    index = SearchIndex(articles, encoder=shared_encoder())
    assert index.rank("my shipment went missing", 1)[0][0].id == "lost"
    lexical = SearchIndex(articles)
    assert [a.id for a, _ in lexical.rank("my shipment went missing", 1)] != ["lost"]


def test_model_loads_and_embeds_with_the_network_switched_off() -> None:
    """A fresh interpreter whose sockets all fail still loads the model and searches."""
    code = (
        "import socket\n"
        "def refuse(*a, **k):\n"
        "    raise OSError('network disabled in this test')\n"
        "socket.socket.connect = refuse\n"
        "socket.create_connection = refuse\n"
        "socket.getaddrinfo = refuse\n"
        "from knowledge_base.embeddings import StaticEncoder\n"
        "v = StaticEncoder().encode(['where is my order'])\n"
        "assert v.shape == (1, 256), v.shape\n"
        "import sys\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert socket.socket.connect is not None  # this process was left alone


class CountingEncoder:
    model_id = "counting-v1"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.seen += list(texts)
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)


def test_cache_reembeds_only_what_changed(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "kb")
    encoder = CountingEncoder()
    first = embed_cached(encoder, ["a", "bb"], cache)
    assert encoder.seen == ["a", "bb"]
    # a restart: a new encoder object, the same cache file
    again = CountingEncoder()
    assert np.array_equal(embed_cached(again, ["a", "bb"], cache), first)
    assert again.seen == []
    # an article changed one phrasing: only that one is embedded
    changed = CountingEncoder()
    embed_cached(changed, ["a", "ccc"], cache)
    assert changed.seen == ["ccc"]


def test_cache_is_keyed_by_model_too(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path, "kb")
    embed_cached(CountingEncoder(), ["a"], cache)
    other = CountingEncoder()
    other.model_id = "counting-v2"
    embed_cached(other, ["a"], cache)
    assert other.seen == ["a"]


def test_a_corrupt_cache_is_rebuilt_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = EmbeddingCache(tmp_path, "kb")
    embed_cached(CountingEncoder(), ["a"], cache)
    cache.path.write_bytes(b"not a numpy file")
    encoder = CountingEncoder()
    with caplog.at_level(logging.WARNING):
        vectors = embed_cached(encoder, ["a"], cache)
    assert encoder.seen == ["a"] and vectors.shape == (1, 2)
    assert "unreadable" in caplog.text
    assert embed_cached(CountingEncoder(), ["a"], cache).shape == (1, 2)  # rewritten, readable


def test_changed_article_invalidates_its_cached_embeddings(tmp_path: Path) -> None:
    kb_dir, cache_dir = tmp_path / "kb", tmp_path / "cache"
    kb_dir.mkdir()
    write_article(kb_dir, "a.md", id="a", title="Lost parcel", questions=["package never came"])
    write_article(kb_dir, "b.md", id="b", title="Reset password", questions=["forgot password"])
    load_knowledge_base(kb_dir, cache_dir=cache_dir).kb.prepare()
    (cache_file,) = cache_dir.glob("*.npz")
    with np.load(cache_file) as data:
        before = set(data["keys"].tolist())
    write_article(kb_dir, "a.md", id="a", title="Lost parcel", questions=["my shipment vanished"])
    kb = load_knowledge_base(kb_dir, cache_dir=cache_dir).kb.prepare()
    with np.load(cache_file) as data:
        after = set(data["keys"].tolist())
    encoder = shared_encoder()
    assert EmbeddingCache.key(encoder.model_id, "my shipment vanished") in after - before
    assert EmbeddingCache.key(encoder.model_id, "package never came") in before - after
    assert kb.search("my shipment vanished").best is not None


def test_unwritable_cache_folder_still_searches(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    kb_dir = tmp_path / "kb"
    kb_dir.mkdir()
    write_article(kb_dir, "a.md", id="a", title="Lost parcel", questions=["package never came"])
    write_article(kb_dir, "b.md", id="b", title="Reset password", questions=["forgot password"])
    kb = load_knowledge_base(kb_dir, cache_dir=blocker / "cache").kb.prepare()
    assert kb.rank("lost parcel", 1)[0].article.id == "a"
