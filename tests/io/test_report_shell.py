"""The HTML report shell: one frame (head, banner, provenance footer) around every report's body."""

from __future__ import annotations

import math
from html.parser import HTMLParser

import pytest

import hemotwin
from hemotwin.io.report import RESEARCH_USE, data_uri, esc, html_page, num, table

HOSTILE = "<script>alert('x')</script>"


class _Tags(HTMLParser):
    """Start and end tags of a page, in order, and whether the nesting closes."""

    def __init__(self):
        super().__init__()
        self.starts: list[str] = []
        self.stack: list[str] = []
        self.bad: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.starts.append(tag)
        if tag not in {"meta", "img", "br", "hr", "link"}:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.stack:
            # Implicitly closed elements (a <p> before a block) are popped with their parent.
            while self.stack and self.stack[-1] != tag:
                self.stack.pop()
            self.stack.pop()
        else:
            self.bad.append(tag)


def _tags(page: str) -> _Tags:
    t = _Tags()
    t.feed(page)
    t.close()
    return t


def test_notice_is_the_one_of_every_output():
    assert RESEARCH_USE == "For research use only. Not for diagnostic use."


def test_page_structure_and_banner():
    page = html_page("Smear report", "<p id=body>content</p>", notice="Reviewed by a person.")
    assert page.startswith("<!DOCTYPE html>")
    t = _tags(page)
    for tag in ("html", "head", "body", "title", "header", "main", "footer", "style"):
        assert t.starts.count(tag) == 1, tag
    assert not t.stack and not t.bad
    assert '<meta charset="utf-8">' in page and "<title>Smear report</title>" in page
    # The banner word for word, at the top and in the footer.
    assert page.count(RESEARCH_USE) == 2
    top = page.index(RESEARCH_USE)
    assert top < page.index("<main>") < page.index("<p id=body>content</p>") < page.index("<footer>")
    assert "Reviewed by a person." in page[top:page.index("<main>")]


def test_page_is_self_contained():
    page = html_page("t", "", provenance={"command": "x"})
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page


def test_heading_subtitle_and_css():
    page = html_page("doc title", "", heading="Visible heading", subtitle="a subtitle", extra_css=".mine{color:red}")
    assert "<title>doc title</title>" in page and "<h1>Visible heading</h1>" in page
    assert "a subtitle" in page and ".mine{color:red}" in page and ".ruo{" in page
    assert "<h1>doc title</h1>" in html_page("doc title", "")


def test_provenance_footer_lists_version_and_keys():
    prov = {"hemotwin_version": "9.9.9", "command": "analyze", "created_utc": "2026-01-02T03:04:05+00:00",
            "config": {"min_confidence": 0.5}, "seeds": {"seed": 7}, "inputs": {"sample": "abc"}}
    page = html_page("t", "", provenance=prov)
    footer = page[page.index("<footer>"):]
    assert "Provenance" in footer and "hemotwin 9.9.9" in footer
    assert "analyze" in footer and "2026-01-02T03:04:05+00:00" in footer
    for key in prov:
        assert f"&quot;{key}&quot;" in footer, key
    assert "min_confidence" in footer and "&quot;seed&quot;: 7" in footer
    assert RESEARCH_USE in footer


def test_footer_without_provenance_still_names_the_version():
    page = html_page("t", "")
    footer = page[page.index("<footer>"):]
    assert f"hemotwin {hemotwin.__version__}" in footer and "<pre>" not in footer
    # A record without a version is shown with this package's version.
    assert f"hemotwin {hemotwin.__version__}" in html_page("t", "", provenance={"command": "c"})


def test_hostile_strings_are_escaped():
    prov = {"command": HOSTILE, HOSTILE: HOSTILE, "config": {"path": HOSTILE}}
    page = html_page(HOSTILE, "", heading=HOSTILE, subtitle=HOSTILE, notice=HOSTILE, provenance=prov)
    assert "<script" not in page
    assert "&lt;script&gt;" in page
    assert f"<title>{esc(HOSTILE)}</title>" in page


def test_esc():
    assert esc(None) == ""
    assert esc(3) == "3"
    assert esc("a<b & 'c' \"d\"") == "a&lt;b &amp; &#x27;c&#x27; &quot;d&quot;"


@pytest.mark.parametrize(("x", "nd", "out"), [(1.25, 1, "1.2"), (2, 2, "2.00"), (None, 1, "–"),
                                              (math.nan, 1, "–"), (math.inf, 3, "–"), (0.0, 0, "0")])
def test_num(x, nd, out):
    assert num(x, nd) == out


def test_num_missing_text():
    assert num(None, missing="-") == "-"


def test_table():
    t = table(("a<b", "c"), ["<tr><td>1</td><td>2</td></tr>"])
    assert t == "<table><tr><th>a&lt;b</th><th>c</th></tr><tr><td>1</td><td>2</td></tr></table>"
    assert table(("a", "b", "c"), [], empty="none") == (
        "<table><tr><th>a</th><th>b</th><th>c</th></tr><tr><td colspan=3>none</td></tr></table>")
    assert table(("a",), iter([])) == "<table><tr><th>a</th></tr></table>"


def test_data_uri():
    assert data_uri(b"\x89PNG") == "data:image/png;base64,iVBORw=="
    assert data_uri(b"", "image/jpeg") == "data:image/jpeg;base64,"
