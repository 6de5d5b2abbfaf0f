"""Semantic signal: static sentence embeddings (WordLlama ``l2_supercat``, 256 dimensions).

The token-embedding table and its tokenizer ship inside the PyPI package ``wordllama`` (MIT)
and are read in place with ``tokenizers`` + ``safetensors``: nothing is downloaded at run time,
and neither wordllama's own code nor torch is imported. A sentence is the mean of its token
vectors, L2-normalised, so one question costs ~0.05 ms (measured in bench/kb_bench.py).

Phrasing embeddings are cached on disk (:class:`EmbeddingCache`), keyed by a hash of (model id,
text): a restart or a reload re-embeds only phrasings that changed."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

log = logging.getLogger(__name__)

MODEL_PACKAGE = "wordllama"
MODEL_NAME = "l2_supercat_256"
CACHE_ENV = "DESKBOT_KB_CACHE_DIR"
MAX_TOKENS = 256  # a question is truncated well before this; bounds the cost of an essay


class EmbeddingsUnavailable(RuntimeError):
    """The model package is missing or broken (it is a default dependency)."""


class Encoder(Protocol):
    """Sentence embeddings, rows L2-normalised; ``model_id`` names the model and its version."""

    model_id: str

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


def model_files() -> tuple[Path, Path, str]:
    """(weights, tokenizer, version) of the installed model package."""
    # find_spec, not import: wordllama's __init__ imports requests, pydantic and its trainer
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsUnavailable(
            f"semantic search needs the package {MODEL_PACKAGE!r}: pip install deskbot"
        )
    root = Path(next(iter(spec.submodule_search_locations)))
    weights = root / "weights" / f"{MODEL_NAME}.safetensors"
    tokenizer = root / "tokenizers" / "l2_supercat_tokenizer_config.json"
    if not weights.is_file() or not tokenizer.is_file():
        raise EmbeddingsUnavailable(f"{MODEL_PACKAGE} is installed without its model files")
    try:
        from importlib.metadata import version

        package_version = version(MODEL_PACKAGE)
    except Exception:  # metadata missing (vendored copy): the file size still tells versions apart
        package_version = f"size{weights.stat().st_size}"
    return weights, tokenizer, package_version


def embeddings_available() -> bool:
    try:
        model_files()
    except EmbeddingsUnavailable:
        return False
    return True


class StaticEncoder:
    """Mean of token embeddings, L2-normalised (what WordLlama's ``embed(norm=True)`` does)."""

    def __init__(self) -> None:
        from tokenizers import Tokenizer

        weights, tokenizer, package_version = model_files()
        self.model_id = f"{MODEL_PACKAGE}-{MODEL_NAME}@{package_version}"
        # Mapped, not read: only the pages of tokens actually seen are in memory, and they are
        # the file's pages (shared by every process, given back under pressure). Read as
        # float32, the 32,000 x 256 table was 32 MB of each process's RSS.
        self.table: np.ndarray = _map_safetensors_table(weights)
        self.dimensions = int(self.table.shape[1])
        self.tokenizer: Any = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(MAX_TOKENS)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        result = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        if not texts:
            return result
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)
        last = self.table.shape[0] - 1
        for row, encoding in enumerate(encodings):
            if encoding.ids:
                ids = np.minimum(np.asarray(encoding.ids, dtype=np.int64), last)
                result[row] = self.table[ids].astype(np.float32).mean(axis=0)
        norms = np.linalg.norm(result, axis=1, keepdims=True)
        return result / np.maximum(norms, 1e-12)


def _map_safetensors_table(path: Path) -> np.ndarray:
    """The file's one tensor as a read-only memory map (safetensors: an 8-byte little-endian
    header length, a JSON header with dtype, shape and byte offsets, then the raw data)."""
    dtypes: dict[str, type[np.floating[Any]]] = {"F16": np.float16, "F32": np.float32}
    with path.open("rb") as file:
        header_length = int.from_bytes(file.read(8), "little")
        header = json.loads(file.read(header_length))
    tensors = [value for key, value in header.items() if key != "__metadata__"]
    dtype = dtypes.get(tensors[0]["dtype"]) if len(tensors) == 1 else None
    if dtype is None:
        raise EmbeddingsUnavailable(f"{path.name}: expected one float16/float32 table")
    tensor = tensors[0]
    start, _ = tensor["data_offsets"]
    return np.memmap(
        path,
        dtype=dtype,
        mode="r",
        offset=8 + header_length + start,
        shape=tuple(tensor["shape"]),
    )


@functools.lru_cache(maxsize=1)
def shared_encoder() -> StaticEncoder:
    """One encoder per process (its 16 MB table mapped from the package), reused across
    reloads."""
    return StaticEncoder()


def default_cache_dir() -> Path:
    """``$DESKBOT_KB_CACHE_DIR``, else ``$XDG_CACHE_HOME/deskbot/kb``, else
    ``~/.cache/deskbot/kb``."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "deskbot" / "kb"


class EmbeddingCache:
    """Embeddings on disk, one ``.npz`` per model and knowledge-base folder, keyed by
    sha256(model id, text). Unreadable files are rebuilt with a warning; writes are atomic
    (temp file + rename), so a crash never leaves a half-written cache."""

    def __init__(self, directory: Path | str, name: str) -> None:
        self.path = Path(directory) / f"{_slug(name)}.npz"

    @staticmethod
    def key(model_id: str, text: str) -> str:
        return hashlib.sha256(f"{model_id}\0{text}".encode()).hexdigest()

    def load(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            return {}
        try:
            with np.load(self.path, allow_pickle=False) as data:
                keys = [str(k) for k in data["keys"].tolist()]
                vectors = np.asarray(data["vectors"], dtype=np.float32)
            if vectors.ndim != 2 or len(keys) != len(vectors):
                raise ValueError("keys and vectors differ in length")
        except Exception as error:  # any damage: the cache is only an optimisation
            log.warning("embedding cache %s unreadable (%s); rebuilding it", self.path, error)
            return {}
        return dict(zip(keys, vectors, strict=True))

    def save(self, vectors: dict[str, np.ndarray]) -> None:
        if not vectors:
            return
        keys = list(vectors)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(handle, "wb") as file:
                np.savez(file, keys=np.array(keys), vectors=np.stack([vectors[k] for k in keys]))
            os.replace(temporary, self.path)
        except OSError as error:  # read-only home, full disk: search works, restarts re-embed
            log.warning("embedding cache %s not written: %s", self.path, error)


def embed_cached(
    encoder: Encoder, texts: Sequence[str], cache: EmbeddingCache | None
) -> np.ndarray:
    """Embed ``texts``, reusing and then refreshing the on-disk cache. The file is rewritten
    with exactly these texts' vectors (old phrasings drop out), and only when something changed."""
    if cache is None:
        return np.asarray(encoder.encode(texts), dtype=np.float32)
    stored = cache.load()
    keys = [EmbeddingCache.key(encoder.model_id, text) for text in texts]
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in stored))
    if missing:
        fresh = np.asarray(encoder.encode(missing), dtype=np.float32)
        for text, vector in zip(missing, fresh, strict=True):
            stored[EmbeddingCache.key(encoder.model_id, text)] = vector
    used = {k: stored[k] for k in dict.fromkeys(keys)}
    if missing or len(used) != len(stored):
        cache.save(used)
    if not texts:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([used[k] for k in keys])


def _slug(name: str) -> str:
    readable = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[-60:]
    return f"{readable}-{hashlib.sha256(name.encode()).hexdigest()[:12]}"
