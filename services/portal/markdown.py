"""Namespace descriptions: CommonMark to HTML that cannot run anything.

markdown-it-py renders with raw HTML off (its ``js-default`` preset), so ``<script>`` typed in
a description comes out as text; nh3 (the ammonia sanitizer) then keeps only an allow-list of
tags and attributes and only http, https and mailto links, as a second line of defence should
the renderer ever let markup through. Links get ``rel="noopener noreferrer nofollow"``.
"""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt
from markupsafe import Markup

__all__ = ["render_markdown"]

_PARSER = MarkdownIt("js-default", {"html": False, "linkify": False, "typographer": False})
_TAGS = {
    "a", "blockquote", "br", "code", "del", "em", "h1", "h2", "h3", "h4", "h5", "h6", "hr",
    "li", "ol", "p", "pre", "strong", "table", "tbody", "td", "th", "thead", "tr", "ul",
}
_ATTRIBUTES = {"a": {"href", "title"}, "th": {"align"}, "td": {"align"}}
_SCHEMES = {"http", "https", "mailto"}


def render_markdown(text: str) -> Markup:
    """Safe HTML for ``text``; Markup so templates insert it without escaping it again."""
    html = _PARSER.render(text)
    return Markup(nh3.clean(  # noqa: S704 - nh3 has just sanitised it
        html, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes=_SCHEMES,
        link_rel="noopener noreferrer nofollow",
    ))
