"""Split any Telegram-HTML text into messages of at most ``limit`` characters: cut at paragraph
breaks, else line breaks, else spaces; close the open tags at the end of each part and reopen
them (with their attributes) at the start of the next; never cut an entity or a tag."""

from __future__ import annotations

import re
from dataclasses import dataclass

TELEGRAM_MESSAGE_LIMIT = 4096
_TOKEN = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9-]*)([^<>]*)>|&(?:#\d+|#x[0-9a-fA-F]+|\w+);|.", re.S)
# A break is only taken when it keeps at least this share of the limit in the current part;
# otherwise a weaker break further on is preferred (avoids a run of tiny messages).
_MIN_FILL = 0.5


def telegram_length(text: str) -> int:
    """Telegram counts UTF-16 code units; counting the markup too keeps us on the safe side."""
    return len(text.encode("utf-16-le")) // 2


@dataclass
class _Atom:
    text: str
    kind: str  # "open", "close", "char"
    name: str = ""


@dataclass
class _Break:
    position: int  # number of atoms kept in the current part
    strength: int  # 3 = blank line, 2 = line break, 1 = space
    stack: tuple[_Atom, ...]  # tags open at that point


def _atoms(html_text: str) -> list[_Atom]:
    atoms = []
    for match in _TOKEN.finditer(html_text):
        if match.group(2):
            kind = "close" if match.group(1) else "open"
            atoms.append(_Atom(match.group(0), kind, match.group(2).lower()))
        else:
            atoms.append(_Atom(match.group(0), "char"))
    return atoms


def split_telegram_html(html_text: str, limit: int = TELEGRAM_MESSAGE_LIMIT) -> list[str]:
    """Parts of at most ``limit`` UTF-16 units each, every one with balanced tags. Empty or
    whitespace-only input gives ``[]``."""
    if limit < 64:
        raise ValueError("limit must be at least 64 characters")
    if telegram_length(html_text) <= limit and html_text.strip():
        return [html_text.strip()]
    parts: list[str] = []
    atoms = _atoms(html_text)
    current: list[_Atom] = []
    stack: list[_Atom] = []
    prefix = 0  # reopened tags at the start of the current part
    length = 0
    breaks: list[_Break] = []
    index = 0
    while index < len(atoms):
        atom = atoms[index]
        stack_after = _apply(stack, atom)
        closing = sum(len(f"</{a.name}>") for a in stack_after)
        size = telegram_length(atom.text)
        if len(current) > prefix and length + size + closing > limit:
            cut = _choose_break(breaks, prefix, len(current)) or _Break(
                len(current), 0, tuple(stack)
            )
            kept, carried = current[: cut.position], current[cut.position :]
            parts.append(_finish(kept, cut.stack))
            current = [*cut.stack, *_drop_leading_space(carried)]
            prefix = len(cut.stack)
            length = sum(telegram_length(a.text) for a in current)
            breaks = []
            stack = _replay(cut.stack, current[prefix:])
            continue
        current.append(atom)
        length += size
        stack = stack_after
        _note_break(breaks, current, tuple(stack))
        index += 1
    if current:
        parts.append(_finish(current, ()))
    return [part for part in parts if _visible(part)]


def _apply(stack: list[_Atom], atom: _Atom) -> list[_Atom]:
    if atom.kind == "open":
        return [*stack, atom]
    if atom.kind == "close":
        for depth in range(len(stack) - 1, -1, -1):
            if stack[depth].name == atom.name:
                return stack[:depth]
    return stack


def _replay(stack: tuple[_Atom, ...], atoms: list[_Atom]) -> list[_Atom]:
    result = list(stack)
    for atom in atoms:
        result = _apply(result, atom)
    return result


def _note_break(breaks: list[_Break], current: list[_Atom], stack: tuple[_Atom, ...]) -> None:
    last = current[-1]
    if last.kind != "char" or last.text not in ("\n", " "):
        return
    strength = 1
    if last.text == "\n":
        previous = current[-2].text if len(current) > 1 else ""
        strength = 3 if previous == "\n" else 2
    breaks.append(_Break(len(current), strength, stack))


def _choose_break(breaks: list[_Break], prefix: int, size: int) -> _Break | None:
    """Strongest break that still fills the part reasonably; None means a hard cut."""
    usable = [b for b in breaks if b.position > prefix]
    for strength in (3, 2, 1):
        candidates = [b for b in usable if b.strength >= strength]
        if candidates and (candidates[-1].position >= size * _MIN_FILL or strength == 1):
            return candidates[-1]
    return None


def _finish(atoms: list[_Atom], stack: tuple[_Atom, ...]) -> str:
    body = "".join(a.text for a in atoms).rstrip()
    return body + "".join(f"</{a.name}>" for a in reversed(stack))


def _drop_leading_space(atoms: list[_Atom]) -> list[_Atom]:
    start = 0
    while start < len(atoms) and atoms[start].kind == "char" and atoms[start].text.isspace():
        start += 1
    return atoms[start:]


_TAG = re.compile(r"<[^<>]*>")


def _visible(part: str) -> bool:
    return bool(_TAG.sub("", part).strip())
