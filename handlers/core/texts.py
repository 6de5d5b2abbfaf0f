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

import functools
import html as html_lib
import re
from pathlib import Path
from typing import Any

import jinja2
import jinja2.sandbox

from knowledge_base.split import split_telegram_html

TEMPLATES_DIR = Path(__file__).parent.parent / "templates"
DEFAULT_LANGUAGE = "en"


@functools.cache
def _environment(templates_dir: Path) -> jinja2.Environment:
    """One environment per template directory and process: the templates ship with the code,
    so each is compiled once and never stat-ed again (a new Texts, e.g. per Application, reuses
    the compiled ones; editing a template needs a restart)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
        auto_reload=False,
        cache_size=-1,
    )


class Texts:
    """Renders templates for a language, falling back to English."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR, default_language: str = "en") -> None:
        self.templates_dir = templates_dir
        self.default_language = default_language
        self.env = _environment(templates_dir)
        self._resolved: dict[tuple[str, str | None], str] = {}
        self._languages: list[str] | None = None
        self._plain: dict[tuple[str, str | None], str] = {}

    def languages(self) -> list[str]:
        if self._languages is None:
            self._languages = sorted(p.name for p in self.templates_dir.iterdir() if p.is_dir())
        return list(self._languages)

    def resolve(self, name: str, lang: str | None) -> str:
        """The template path used for ``name`` in ``lang`` (after fallback; looked up once)."""
        key = (name, lang)
        path = self._resolved.get(key)
        if path is None:
            path = self._resolved[key] = self._find(name, lang)
        return path

    def _find(self, name: str, lang: str | None) -> str:
        for candidate in _language_candidates(lang, self.default_language):
            path = f"{candidate}/{name}.j2"
            if (self.templates_dir / path).is_file():
                return path
        raise jinja2.TemplateNotFound(f"{self.default_language}/{name}.j2")

    def render(self, template: str, lang: str | None = None, /, **ctx: Any) -> str:
        """Render ``template`` as Telegram HTML, stripped of surrounding whitespace."""
        return self.env.get_template(self.resolve(template, lang)).render(**ctx).strip()

    def render_text(self, source: str, /, **ctx: Any) -> str:
        """Render text written by the desk's staff (a canned reply) as *plain* text, in a
        sandbox: it can use the variables it is given and nothing else. Raises
        ``jinja2.TemplateError`` (syntax, unknown variable) for the caller to explain."""
        return _STAFF_TEXTS.from_string(source).render(**ctx).strip()

    def render_plain(self, template: str, lang: str | None = None, /, **ctx: Any) -> str:
        """Render and un-escape, for places that take plain text (command menu, button labels).
        A text without variables (a button label) is rendered once per language."""
        if ctx:
            return html_lib.unescape(self.render(template, lang, **ctx))
        key = (template, lang)
        text = self._plain.get(key)
        if text is None:
            text = self._plain[key] = html_lib.unescape(self.render(template, lang))
        return text


# Staff-written texts: sandboxed, plain (whoever sends the result escapes it), strict.
_STAFF_TEXTS = jinja2.sandbox.ImmutableSandboxedEnvironment(
    autoescape=False, undefined=jinja2.StrictUndefined, keep_trailing_newline=False
)


def _language_candidates(lang: str | None, default: str) -> list[str]:
    candidates: list[str] = []
    if lang:
        code = lang.strip().lower().replace("_", "-")
        candidates += [code, code.split("-")[0]]
    candidates.append(default)
    return list(dict.fromkeys(c for c in candidates if re.fullmatch(r"[a-z]{2,3}(-[a-z0-9]+)?", c)))


# Splitting long HTML into messages lives in the knowledge base package (articles need it too).
__all__ = ["Texts", "split_telegram_html"]
