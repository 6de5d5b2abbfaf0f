"""Markdown -> Telegram HTML. Only tags Telegram's HTML parse mode accepts are produced; all
text is escaped, so an article can never break the message (or inject markup)."""

from __future__ import annotations

import html
import re
from urllib.parse import urlsplit

from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

from knowledge_base.models import Article

# Raw HTML in articles is shown as text, never passed through.
_PARSER = MarkdownIt("commonmark", {"html": False}).enable(["strikethrough", "table"])
SAFE_SCHEMES = {"http", "https", "tg", "mailto"}
_LANGUAGE = re.compile(r"^[A-Za-z0-9_+#.-]{1,30}$")
_BLANK_LINES = re.compile(r"\n{3,}")


def escape_text(text: str) -> str:
    return html.escape(text, quote=False)


def escape_attribute(text: str) -> str:
    return html.escape(text, quote=True)


def render_telegram_html(markdown: str) -> str:
    """Render an article body. Headings -> bold, lists -> "• " lines, emphasis, safe links,
    code -> <code>/<pre>, quotes -> <blockquote>. May exceed 4096 characters: send it through
    :func:`knowledge_base.split.split_telegram_html`."""
    tree = SyntaxTreeNode(_PARSER.parse(markdown))
    rendered = _Renderer().blocks(tree.children, indent="")
    return _BLANK_LINES.sub("\n\n", rendered).strip()


class _Renderer:
    def blocks(self, nodes: list[SyntaxTreeNode], *, indent: str, tight: bool = False) -> str:
        parts = [self.block(node, indent=indent, tight=tight) for node in nodes]
        separator = "\n" if tight else "\n\n"
        return separator.join(part for part in parts if part)

    def block(self, node: SyntaxTreeNode, *, indent: str, tight: bool) -> str:
        kind = node.type
        if kind == "heading":
            return f"<b>{self.inline_children(node)}</b>"
        if kind == "paragraph":
            return self.inline_children(node)
        if kind in ("bullet_list", "ordered_list"):
            return self.list(node, indent=indent)
        if kind in ("fence", "code_block"):
            return self.code_block(node)
        if kind == "blockquote":
            return f"<blockquote>{self.blocks(node.children, indent='')}</blockquote>"
        if kind == "hr":
            return "——————"
        if kind == "table":
            return self.table(node)
        if kind == "html_block":
            return escape_text(node.content.strip())
        return self.blocks(node.children, indent=indent, tight=tight)

    def list(self, node: SyntaxTreeNode, *, indent: str) -> str:
        ordered = node.type == "ordered_list"
        start = int(node.attrs.get("start", 1) or 1) if ordered else 1
        lines = []
        for number, item in enumerate(node.children, start=start):
            marker = f"{number}. " if ordered else "• "
            body = self.blocks(item.children, indent="", tight=True)
            body = body.replace("\n", "\n" + indent + " " * len(marker))
            lines.append(f"{indent}{marker}{body}")
        return "\n".join(lines)

    def code_block(self, node: SyntaxTreeNode) -> str:
        code = escape_text(node.content.rstrip("\n"))
        language = (node.info or "").split(maxsplit=1)[0] if node.type == "fence" else ""
        if language and _LANGUAGE.match(language):
            return f'<pre><code class="language-{escape_attribute(language)}">{code}</code></pre>'
        return f"<pre>{code}</pre>"

    def table(self, node: SyntaxTreeNode) -> str:
        rows = []
        for section in node.children:
            for row in section.children:
                cells = [self.inline_children(cell) for cell in row.children]
                rows.append(" | ".join(cells))
        return "\n".join(rows)

    def inline_children(self, node: SyntaxTreeNode) -> str:
        return "".join(self.inline(child) for child in node.children)

    def inline(self, node: SyntaxTreeNode) -> str:
        kind = node.type
        if kind == "inline":
            return self.inline_children(node)
        if kind == "text":
            return escape_text(node.content)
        if kind == "softbreak":
            return " "
        if kind == "hardbreak":
            return "\n"
        if kind == "code_inline":
            return f"<code>{escape_text(node.content)}</code>"
        if kind == "strong":
            return f"<b>{self.inline_children(node)}</b>"
        if kind == "em":
            return f"<i>{self.inline_children(node)}</i>"
        if kind == "s":
            return f"<s>{self.inline_children(node)}</s>"
        if kind == "link":
            return self.link(str(node.attrs.get("href", "")), self.inline_children(node))
        if kind == "image":
            alt = escape_text(node.content or str(node.attrs.get("alt", "")) or "image")
            return self.link(str(node.attrs.get("src", "")), alt)
        if kind == "html_inline":
            return escape_text(node.content)
        return self.inline_children(node) if node.children else escape_text(node.content)

    def link(self, href: str, label: str) -> str:
        if not _safe_url(href):
            return label
        return f'<a href="{escape_attribute(href)}">{label or escape_text(href)}</a>'


def _safe_url(url: str) -> bool:
    try:
        scheme = urlsplit(url).scheme.lower()
    except ValueError:
        return False
    return scheme in SAFE_SCHEMES


def render_answer(article: Article, *, link_label: str = "Read the full article") -> str:
    """An answer that shows its source: the article's title as a bold heading, its body, and,
    when the article has a ``url``, a link to it (the same layout as ``kb_answer.j2``)."""
    parts = [f"<b>{escape_text(article.title)}</b>", render_telegram_html(article.body)]
    if article.url and _safe_url(article.url):
        href = escape_attribute(article.url)
        parts.append(f'<a href="{href}">{escape_text(link_label)}</a>')
    return "\n\n".join(part for part in parts if part)
