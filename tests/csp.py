"""The strict Content-Security-Policy every page carries, and a check that a page needs nothing it blocks."""

from __future__ import annotations

from html.parser import HTMLParser

from django.test import Client

POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


class InlineCode(HTMLParser):
    """Collects what a strict policy would block in a page: inline scripts, styles and handlers."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        # json_script's data blocks are not scripts: a policy never blocks them.
        if tag == "script" and "src" not in attributes and attributes.get("type") != "application/json":
            self.found.append(f"inline <script> {attributes}")
        if tag == "style":
            self.found.append("<style> element")
        inline = [name for name in attributes if name == "style" or name.startswith("on")]
        self.found += [f"{name}= on <{tag}>" for name in inline]


def assert_strict_page(client: Client, path: str) -> None:
    """Assert that ``path`` answers 200 with the strict policy and holds no inline code it would block."""
    response = client.get(path, follow=True)
    assert response.status_code == 200, (path, response.status_code)
    assert response["Content-Security-Policy"] == POLICY
    page = InlineCode()
    page.feed(response.content.decode())
    assert page.found == [], path
