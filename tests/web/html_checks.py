"""Checks on rendered HTML with the standard library's parser: what markup a
page really holds, not what its text looks like."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser


@dataclass
class Markup:
    """Every start tag of a page with its attributes, and the page's text."""

    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    # Text found inside <script> elements (an inline script).
    script_text: list[str] = field(default_factory=list)


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.found = Markup()
        self.in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.tags.append((tag, {k: v or "" for k, v in attrs}))
        self.in_script = tag == "script"

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self.in_script = False

    def handle_data(self, data: str) -> None:
        if self.in_script:
            self.found.script_text.append(data)
        else:
            self.found.text.append(data)


def parse(html: str) -> Markup:
    """The tags and text of ``html``."""
    collector = _Collector()
    collector.feed(html)
    collector.close()
    return collector.found


# The only script a page may load: the package's own, by URL (CSP 'self').
OUR_SCRIPTS = frozenset({"/static/live.js"})


def unsafe_markup(html: str) -> list[str]:
    """What in ``html`` could run script or style inline: inline script or
    style elements, scripts other than the package's own, ``on*`` handlers,
    ``style`` attributes, ``javascript:`` / ``data:`` / ``vbscript:`` URLs.
    The pages never need any of them."""
    problems = []
    found = parse(html)
    if any(t.strip() for t in found.script_text):
        problems.append("inline <script> text")
    for tag, attrs in found.tags:
        if tag == "script" and attrs.get("src") not in OUR_SCRIPTS:
            problems.append(f"<script src={attrs.get('src')!r}>")
        if tag in ("style", "iframe", "object", "embed", "base"):
            problems.append(f"<{tag}>")
        for name, value in attrs.items():
            if name.startswith("on") or name == "style" or name == "srcdoc":
                problems.append(f"<{tag} {name}=...>")
            if name in ("href", "src", "action", "formaction", "xlink:href"):
                scheme = value.strip().lower().replace("\t", "").replace("\n", "")
                if scheme.startswith(("javascript:", "data:", "vbscript:")):
                    problems.append(f"<{tag} {name}={value!r}>")
    return problems


def page_text(html: str) -> str:
    """The visible text of a page (entities decoded)."""
    return "".join(parse(html).text)
