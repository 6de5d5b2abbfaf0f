from __future__ import annotations

from pathlib import Path

import pytest

from knowledge_base import KnowledgeBase, default_kb_dir, load_knowledge_base

DATA = Path(__file__).parent / "data"


def write_article(
    directory: Path,
    name: str,
    *,
    id: str,
    title: str,
    questions: list[str],
    body: str = "The answer.",
) -> Path:
    lines = ["---", f"id: {id}", f"title: {title}", "questions:"]
    lines += [f"  - {q}" for q in questions]
    lines += ["---", "", body, ""]
    path = directory / name
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def sample_kb() -> KnowledgeBase:
    """The bundled sample with its index built once for the whole session."""
    result = load_knowledge_base(default_kb_dir())
    assert result.problems == []
    return result.kb.prepare()


@pytest.fixture(autouse=True, scope="session")
def _embedding_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Embeddings cached in a throw-away folder, never in the user's ~/.cache."""
    import os

    os.environ.setdefault("DESKBOT_KB_CACHE_DIR", str(tmp_path_factory.mktemp("kb-cache")))
