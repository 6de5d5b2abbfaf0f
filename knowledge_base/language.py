"""Which language a question is written in, among the languages a knowledge base has.

py3langid (a maintained fork of langid.py: a naive-Bayes byte n-gram model shipped in the
package, numpy only) restricted to the knowledge base's languages; ~0.1 ms a question. Short
or mixed questions ("ok", "refund") get a low confidence: then the caller's hint (the
conversation's language) wins, else the knowledge base's default language."""

from __future__ import annotations

import functools
import threading
from collections.abc import Collection
from typing import Any

# Below this probability the detection is a guess: prefer the conversation's language.
MIN_CONFIDENCE = 0.9
_lock = threading.Lock()


@functools.lru_cache(maxsize=8)
def _identifier(languages: tuple[str, ...]) -> Any:
    """An identifier restricted to ``languages``; set_languages mutates, so one per set
    (loading takes ~1.5 s, once per process and set)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    known = set(identifier.nb_classes)
    usable = [code for code in languages if code in known]
    if len(usable) >= 2:
        identifier.set_languages(usable)
        # It keeps the full model (all 97 languages, 27 MB) to reset to; this one never
        # resets (one identifier per set of languages), so keep only the restricted model.
        identifier._full_model = identifier.nb_ptc, identifier.nb_pc, identifier.nb_classes
    return identifier


def base_code(language: str | None) -> str | None:
    """'de-DE' / 'de_at' -> 'de'; None or empty -> None."""
    if not language:
        return None
    code = language.strip().lower().replace("_", "-").split("-")[0]
    return code or None


def detect_language(
    text: str, languages: Collection[str], *, hint: str | None = None, default: str
) -> tuple[str, float]:
    """(language, confidence) of ``text`` among ``languages``. One language: that one, no
    detection. Unsure: ``hint`` when it is one of them, else ``default``."""
    choices = tuple(sorted({code for code in languages if code}))
    hinted = base_code(hint)
    if len(choices) <= 1:
        return (choices[0] if choices else default), 1.0
    with _lock:  # load once even when two questions arrive together
        identifier = _identifier(choices)
    language, confidence = identifier.classify(text)
    if confidence >= MIN_CONFIDENCE and language in choices:
        return language, float(confidence)
    fallback = hinted if hinted in choices else default
    return fallback, float(confidence)
