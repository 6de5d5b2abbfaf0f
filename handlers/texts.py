"""Every customer-facing text is a Jinja2 template in ``handlers/templates/<lang>/<name>.j2``.

Templates produce Telegram HTML (``parse_mode=HTML``) with autoescape ON, so a customer named
``<b>&`` is shown literally and never breaks a message. ``StrictUndefined`` turns a missing
variable into an error in tests instead of an empty gap in production.

Usage::

    texts = Texts()
    html = texts.render("greeting", "de-DE", first_name=user.first_name)

The language is the customer's Telegram ``language_code``; the first of ``de-de``, ``de`` and
English that has the template wins, so a partial translation falls back per template.
"""

from __future__ import annotations

import html as html_lib
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_LANGUAGE = "en"
TELEGRAM_TEXT_LIMIT = 4096


class Texts:
    """Renders templates for a language, falling back to English."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, default_language: str = "en") -> None:
        self.templates_dir = templates_dir
        self.default_language = default_language
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(templates_dir)),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
        )

    def languages(self) -> list[str]:
        return sorted(p.name for p in self.templates_dir.iterdir() if p.is_dir())

    def resolve(self, name: str, lang: str | None) -> str:
        """The template path used for ``name`` in ``lang`` (after fallback)."""
        for candidate in _language_candidates(lang, self.default_language):
            path = f"{candidate}/{name}.j2"
            if (self.templates_dir / path).is_file():
                return path
        raise jinja2.TemplateNotFound(f"{self.default_language}/{name}.j2")

    def render(self, name: str, lang: str | None = None, **ctx: Any) -> str:
        """Render template ``name`` as Telegram HTML, stripped of surrounding whitespace."""
        return self.env.get_template(self.resolve(name, lang)).render(**ctx).strip()

    def render_plain(self, name: str, lang: str | None = None, **ctx: Any) -> str:
        """Render and un-escape, for places that take plain text (command menu, button labels)."""
        return html_lib.unescape(self.render(name, lang, **ctx))


def _language_candidates(lang: str | None, default: str) -> list[str]:
    candidates: list[str] = []
    if lang:
        code = lang.strip().lower().replace("_", "-")
        candidates += [code, code.split("-")[0]]
    candidates.append(default)
    return list(dict.fromkeys(c for c in candidates if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]+)?", c)))


@lru_cache(maxsize=1)
def default_texts() -> Texts:
    return Texts()


def render(name: str, lang: str | None = None, **ctx: Any) -> str:
    """Shortcut on the bundled templates: ``render("greeting", "en", first_name="Ann")``."""
    return default_texts().render(name, lang, **ctx)


# --------------------------------------------------------------------------------------------
# Splitting long HTML into messages Telegram accepts
# --------------------------------------------------------------------------------------------

_TOKEN = re.compile(r"(<[^>]+>)|(&#?\w+;)|([^<&]+|[<&])")
_TAG_NAME = re.compile(r"</?\s*([a-zA-Z][\w-]*)")


def visible_length(html: str) -> int:
    """Length Telegram counts: the text after entity parsing (tags removed, entities decoded)."""
    return len(html_lib.unescape(re.sub(r"<[^>]+>", "", html)))


def split_telegram_html(html: str, limit: int = TELEGRAM_TEXT_LIMIT) -> list[str]:
    """Split Telegram HTML into chunks of at most ``limit`` visible characters.

    Prefers paragraph breaks, then line breaks, then spaces; a tag open across a cut is closed
    at the end of one chunk and reopened at the start of the next, so every chunk is valid.
    """
    if visible_length(html) <= limit:
        return [html] if html.strip() else []
    return [c for c in _split(html, limit, ("\n\n", "\n")) if c.strip()]


def _split(html: str, limit: int, separators: tuple[str, ...]) -> list[str]:
    if visible_length(html) <= limit:
        return [html]
    if not separators:
        return _split_words(html, limit)
    sep, rest = separators[0], separators[1:]
    chunks: list[str] = []
    current = ""
    for block in _balanced_blocks(html, sep):
        candidate = f"{current}{sep}{block}" if current else block
        if visible_length(candidate) <= limit:
            current = candidate
            continue
        if current:
            chunks.append(current)
        if visible_length(block) <= limit:
            current = block
        else:
            *done, current = _split(block, limit, rest)
            chunks.extend(done)
    if current:
        chunks.append(current)
    return chunks


def _balanced_blocks(html: str, sep: str) -> list[str]:
    """Split at ``sep`` only where no tag is open (a <pre> may contain blank lines)."""
    blocks: list[str] = []
    pending = ""
    for part in html.split(sep):
        pending = f"{pending}{sep}{part}" if pending else part
        if not _open_tags(pending):
            blocks.append(pending)
            pending = ""
    if pending:
        blocks.append(pending)
    return blocks


def _open_tags(html: str) -> list[tuple[str, str]]:
    stack: list[tuple[str, str]] = []
    for match in re.finditer(r"<[^>]+>", html):
        _track_tag(stack, match.group(0))
    return stack


def _track_tag(stack: list[tuple[str, str]], tag: str) -> None:
    name_match = _TAG_NAME.match(tag)
    if not name_match:
        return
    name = name_match.group(1).lower()
    if tag.startswith("</"):
        for i in range(len(stack) - 1, -1, -1):
            if stack[i][0] == name:
                del stack[i:]
                break
    elif not tag.endswith("/>"):
        stack.append((name, tag))


def _split_words(html: str, limit: int) -> list[str]:
    chunks: list[str] = []
    stack: list[tuple[str, str]] = []
    parts: list[str] = []
    length = 0

    def flush() -> None:
        nonlocal parts, length
        if length:
            chunks.append("".join(parts) + "".join(f"</{n}>" for n, _ in reversed(stack)))
        parts = [tag for _, tag in stack]
        length = 0

    for tag, entity, text in _TOKEN.findall(html):
        if tag:
            _track_tag(stack, tag)
            parts.append(tag)
            continue
        atoms = [entity] if entity else re.findall(r"\S+\s*|\s+", text)
        for atom in atoms:
            size = visible_length(atom) if not entity else 1
            while size > limit:  # one word longer than a message: hard cut
                if length:
                    flush()
                parts.append(atom[:limit])
                length = limit
                flush()
                atom, size = atom[limit:], size - limit
            if length + size > limit:
                flush()
            parts.append(atom)
            length += size
    flush()
    return chunks
