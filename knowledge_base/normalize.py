"""Text normalisation shared by indexing and querying, so both sides see the same tokens."""

from __future__ import annotations

import re
import unicodedata

# Longer questions carry no extra signal for matching and would only slow the search down.
MAX_QUERY_CHARS = 1000

_NON_WORD = re.compile(r"[^\w]+")
_UNDERSCORES = re.compile(r"_+")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Case-fold, strip accents and punctuation, collapse spaces: "Où est MA commande?!" ->
    "ou est ma commande". Letters of every script survive; emoji and symbols do not."""
    text = text[:MAX_QUERY_CHARS]
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    lowered = stripped.casefold()
    # Apostrophes inside words ("don't") join rather than split, so "dont" matches too.
    lowered = lowered.replace("'", "").replace("\u2019", "")
    words = _UNDERSCORES.sub(" ", _NON_WORD.sub(" ", lowered))
    return _SPACES.sub(" ", words).strip()
