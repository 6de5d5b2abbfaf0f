"""Greetings, thanks and goodbyes: a serious desk answers "hello" politely instead of saying it
has no answer and offering a person.

Only a message that is *nothing but* small talk matches ("hi!", "Thanks a lot 🙏", "ok, bye"):
"hello, my parcel is lost" still goes to the knowledge base. The reply is a template
``small_talk_<kind>``; the matcher is deliberately tiny (a few words in the languages we are
most often greeted in), not a chat bot.
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum


class SmallTalk(StrEnum):
    # In order of precedence: "thanks, bye" is answered as thanks.
    THANKS = "thanks"
    GOODBYE = "goodbye"
    GREETING = "greeting"
    ACK = "ack"  # "ok", "got it", 👍


# Phrases after normalisation (case-folded, punctuation and emoji removed, single spaces).
PHRASES: dict[SmallTalk, tuple[str, ...]] = {
    SmallTalk.THANKS: (
        "thanks", "thank you", "thank u", "thankyou", "thx", "thnx", "tnx", "ty", "tysm",
        "many thanks", "cheers", "much appreciated", "appreciate it", "i appreciate it",
        "danke", "danke schön", "danke schon", "merci", "gracias", "grazie", "obrigado",
        "obrigada", "dank je", "dankjewel", "спасибо", "дякую", "dziękuję", "teşekkürler",
        "شكرا", "谢谢", "ありがとう",
    ),
    SmallTalk.GOODBYE: (
        "bye", "bye bye", "goodbye", "good bye", "see you", "see ya", "cya", "good night",
        "have a nice day", "have a good day", "tschüss", "au revoir", "adiós", "adios", "ciao",
        "пока", "до свидания",
    ),
    SmallTalk.GREETING: (
        "hi", "hii", "hello", "helo", "hallo", "hey", "heya", "hiya", "howdy", "yo", "greetings",
        "good morning", "good afternoon", "good evening", "good day", "morning",
        "how are you", "how are you doing", "hows it going", "whats up", "sup",
        "hola", "bonjour", "salut", "guten tag", "moin", "servus", "olá", "ola", "buongiorno",
        "привет", "здравствуйте", "добрый день", "вітаю", "привіт", "cześć", "merhaba",
        "مرحبا", "你好", "こんにちは", "namaste",
    ),
    SmallTalk.ACK: (
        "ok", "okay", "k", "kk", "okey", "alright", "all right", "got it", "i see", "understood",
        "great", "cool", "perfect", "nice", "fine", "good", "awesome", "done",
        "that helps", "that helped", "that works", "хорошо", "понятно", "ок",
    ),
}  # fmt: skip

# Words that may pad small talk without changing it ("hi there", "thanks so much, team").
FILLERS = (
    "there", "bot", "all", "everyone", "team", "guys", "folks", "again", "so much", "very much",
    "a lot", "a bunch", "you", "u", "sir", "madam", "dear", "friend", "and", "oh", "ah", "well",
    "very", "really", "so", "for your help", "for the help", "for helping", "for that",
    "for this", "for everything", "for the info", "for the answer", "большое", "vielen",
    "muchas", "beaucoup", "mille",
)  # fmt: skip

EMOJI: dict[str, SmallTalk] = {
    "👋": SmallTalk.GREETING,
    "🙏": SmallTalk.THANKS,
    "❤": SmallTalk.THANKS,
    "🤝": SmallTalk.THANKS,
    "👍": SmallTalk.ACK,
    "👌": SmallTalk.ACK,
    "🆗": SmallTalk.ACK,
}

_EMOJI_MODIFIERS = "\ufe0f\u200d"

# Friendly faces that may accompany small talk without changing it ("thanks 😊").
FRIENDLY = frozenset("😊🙂😀😃😄😁🤗☺😉🥰😍✨🎉")

# Small talk is short; anything longer is a question worth searching.
MAX_CHARS = 60


def _alternation(phrases: tuple[str, ...]) -> str:
    # Longest first, so "thank you" wins over "thank" and "good morning" over "good".
    ordered = sorted(set(phrases), key=len, reverse=True)
    return "|".join(re.escape(p).replace(r"\ ", r"\s") for p in ordered)


_ANY_PHRASE = _alternation(tuple(p for ps in PHRASES.values() for p in ps) + FILLERS)
_ONLY_SMALL_TALK = re.compile(rf"(?:(?:{_ANY_PHRASE})(?:\s|$))+")
_KIND_PATTERNS = {
    kind: re.compile(rf"(?:^|\s)(?:{_alternation(phrases)})(?=\s|$)")
    for kind, phrases in PHRASES.items()
}


def normalise(text: str) -> tuple[str, set[str]]:
    """Words (letters, digits, apostrophes dropped) in lower case, and the emoji seen."""
    words: list[str] = []
    emoji: set[str] = set()
    for char in unicodedata.normalize("NFC", text).casefold():
        category = unicodedata.category(char)
        if char in EMOJI:
            emoji.add(char)
            words.append(" ")
        elif char in FRIENDLY:
            words.append(" ")
        elif char in _EMOJI_MODIFIERS or "\U0001f3fb" <= char <= "\U0001f3ff":
            continue  # variation selector, joiner, skin tone
        elif category[0] in "LN" or category == "Mn":
            words.append(char)
        elif char in "'’":
            continue  # "what's" -> "whats"
        else:
            words.append(" ")
    return " ".join("".join(words).split()), emoji


def classify(text: str | None) -> SmallTalk | None:
    """The kind of small talk ``text`` is, or None when it says (or asks) anything more."""
    if not text or len(text) > MAX_CHARS:
        return None
    if _has_other_symbols(text):
        return None  # 😡, 📦, <b>...: there is more to it
    words, emoji = normalise(text)
    kinds = {EMOJI[e] for e in emoji}
    if words:
        if _ONLY_SMALL_TALK.fullmatch(words + " ") is None:
            return None
        kinds |= {kind for kind, pattern in _KIND_PATTERNS.items() if pattern.search(words)}
    elif not emoji:
        return None
    return next((kind for kind in SmallTalk if kind in kinds), None)


def _has_other_symbols(text: str) -> bool:
    """Symbols we do not know (😡, 📦, ``<``, ``$``): the message is not just small talk."""
    for char in text:
        if char in EMOJI or char in FRIENDLY or char in _EMOJI_MODIFIERS:
            continue
        if "\U0001f3fb" <= char <= "\U0001f3ff":  # skin tones
            continue
        if unicodedata.category(char)[0] == "S":
            return True
    return False
