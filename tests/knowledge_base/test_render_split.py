from __future__ import annotations

import re
from html.parser import HTMLParser

from hypothesis import given, settings
from hypothesis import strategies as st

from knowledge_base import render_telegram_html, split_telegram_html
from knowledge_base.split import telegram_length

ALLOWED = {"b", "i", "u", "s", "a", "code", "pre", "blockquote", "tg-spoiler"}


class _Checker(HTMLParser):
    """Collects tags and verifies nesting, as Telegram's parser would reject bad nesting."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.tags: set[str] = set()
        self.balanced = True
        self.text = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.balanced = False

    def handle_data(self, data: str) -> None:
        self.text += data


def check(html: str) -> _Checker:
    checker = _Checker()
    checker.feed(html)
    checker.close()
    assert checker.balanced and not checker.stack, html
    assert checker.tags <= ALLOWED, checker.tags
    # every & starts an entity Telegram knows
    assert not re.search(r"&(?!(lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);)", html), html
    return checker


def test_markdown_elements_become_telegram_html() -> None:
    html = render_telegram_html(
        "# Returns\n\nSend it **back** within _30 days_, see [our page](https://x.example/r?a=1&b=2)."
        "\n\n- one\n- two\n  - nested\n\n1. first\n2. second\n\n`code` and"
        "\n\n```python\nx = 1 < 2\n```"
        "\n\n> quoted"
    )
    assert html.startswith("<b>Returns</b>\n\nSend it <b>back</b> within <i>30 days</i>")
    assert '<a href="https://x.example/r?a=1&amp;b=2">our page</a>' in html
    assert "• one\n• two\n  • nested" in html
    assert "1. first\n2. second" in html
    assert "<code>code</code>" in html
    assert '<pre><code class="language-python">x = 1 &lt; 2</code></pre>' in html
    assert "<blockquote>quoted</blockquote>" in html
    check(html)


def test_hostile_markdown_is_escaped_not_executed() -> None:
    hostile = (
        '<script>alert(1)</script> <b onclick="x">bold?</b> <a href="javascript:alert(1)">x</a>\n\n'
        '[click](javascript:alert(1)) [data](data:text/html,hi) ![img](https://x/i.png "t")\n\n'
        "<div>block html</div>\n\n&amp; &bogus; < > \" '\n\n"
        '```"><script>\n</pre><b>\n```\n\n[q](https://x.example/"onmouseover="a)'
    )
    html = render_telegram_html(hostile)
    checker = check(html)
    assert "<script" not in html
    assert re.findall(r'<a href="([a-z]+):', html) == ["https", "https"]
    assert "&lt;script&gt;" in html
    assert "<script>alert(1)</script>" in checker.text  # shown to the reader as text


def test_short_text_is_one_part_and_empty_text_no_part() -> None:
    assert split_telegram_html("<b>hi</b>") == ["<b>hi</b>"]
    assert split_telegram_html("   ") == []


def test_long_article_splits_on_paragraphs_with_balanced_tags() -> None:
    paragraph = "**Bold start** and a [link](https://x.example) " + "words " * 60
    markdown = "\n\n".join(f"{i}. {paragraph}" for i in range(60))
    html = render_telegram_html(f"> {markdown}") + "\n\n" + render_telegram_html(markdown)
    parts = split_telegram_html(html)
    assert len(parts) > 3
    for part in parts:
        assert telegram_length(part) <= 4096
        check(part)
    # paragraphs are kept whole: every part starts a new numbered item (or its quote)
    assert all(re.match(r"^(<blockquote>)?\d+\. ", p) for p in parts)


def test_tags_are_reopened_with_attributes_and_entities_never_cut() -> None:
    html = '<a href="https://x.example/?a=1&amp;b=2"><b>' + "&amp;&lt;é😀 " * 400 + "</b></a>"
    parts = split_telegram_html(html, limit=300)
    assert len(parts) > 5
    for part in parts:
        assert telegram_length(part) <= 300
        assert part.startswith('<a href="https://x.example/?a=1&amp;b=2"><b>')
        assert part.endswith("</b></a>")
        check(part)
    joined = "".join(check(p).text for p in parts).replace(" ", "")
    assert joined == "&<é😀" * 400


def test_code_block_without_spaces_is_hard_cut_but_valid() -> None:
    html = "<pre>" + "x" * 10_000 + "</pre>"
    parts = split_telegram_html(html)
    assert [len(check(p).text) for p in parts] == [4085, 4085, 1830]


fragments = st.sampled_from(
    ["<b>", "</b>", "<i>", "</i>", '<a href="https://e.x">', "</a>", "<pre>", "</pre>"]
)


@st.composite
def telegram_html(draw: st.DrawFn) -> str:
    pieces: list[str] = []
    stack: list[str] = []
    for _ in range(draw(st.integers(0, 60))):
        choice = draw(st.integers(0, 3))
        if choice == 0 and len(stack) < 4:
            tag = draw(st.sampled_from(["b", "i", "pre", "tg-spoiler"]))
            stack.append(tag)
            pieces.append(f"<{tag}>")
        elif choice == 1 and stack:
            pieces.append(f"</{stack.pop()}>")
        else:
            text = draw(st.text(alphabet=st.sampled_from("ab é😀\n<>&"), max_size=80))
            pieces.append(text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;"))
    pieces += [f"</{tag}>" for tag in reversed(stack)]
    return "".join(pieces)


@settings(max_examples=150, deadline=None)
@given(html=telegram_html(), limit=st.integers(150, 300))
def test_any_balanced_html_splits_into_valid_parts(html: str, limit: int) -> None:
    parts = split_telegram_html(html, limit=limit)
    visible = "".join(check(html).text.split())
    assert "".join("".join(check(p).text.split()) for p in parts) == visible
    for part in parts:
        assert telegram_length(part) <= limit


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=500))
def test_any_markdown_renders_to_allowed_balanced_html(markdown: str) -> None:
    check(render_telegram_html(markdown))


def test_an_answer_shows_its_source_title_and_link() -> None:
    from knowledge_base import Article, render_answer

    article = Article(
        id="returns",
        title="Returns & refunds",
        body="Send it back within **30 days**.",
        url="https://northwind.example/returns?a=1&b=2",
    )
    html = render_answer(article)
    assert html.startswith("<b>Returns &amp; refunds</b>\n\n")
    assert "<b>30 days</b>" in html
    assert html.endswith(
        '<a href="https://northwind.example/returns?a=1&amp;b=2">Read the full article</a>'
    )


def test_an_answer_without_url_has_no_link_and_unsafe_urls_are_dropped() -> None:
    from knowledge_base import Article, render_answer

    assert "<a " not in render_answer(Article(id="a", title="T", body="Body"))
    unsafe = Article(id="a", title="T", body="Body", url="javascript:alert(1)")
    assert "<a " not in render_answer(unsafe)


def test_article_url_must_be_a_web_address() -> None:
    import pytest

    from knowledge_base.loader import ArticleError, parse_article

    article = parse_article("---\nid: a\ntitle: T\nurl: https://x.example/a\n---\n\nBody\n")
    assert article.url == "https://x.example/a"
    with pytest.raises(ArticleError) as caught:
        parse_article("---\nid: a\ntitle: T\nurl: javascript:alert(1)\n---\n\nBody\n")
    assert caught.value.line == 4 and "url" in caught.value.reason
