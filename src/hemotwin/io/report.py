"""What every report of the package shares: the research-use notice and the HTML report shell.

Every HTML report (smear analysis, patient monitoring, cohort summary, classifier evaluation) is one
:func:`html_page`: the same head (charset, title, base CSS), header, research-use banner and provenance
footer around the writer's own body. The pages are self-contained: styles inline, images as ``data:``
URIs, no script, no network. The helpers below (:func:`esc`, :func:`num`, :func:`table`,
:func:`data_uri`) are the ones the writers would otherwise each repeat.

Standard library only: the monitoring command imports this on its < 1 s path.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

from hemotwin import __version__

__all__ = ["BASE_CSS", "RESEARCH_USE", "data_uri", "esc", "html_page", "num", "table"]

#: The notice every output of the package carries, word for word.
RESEARCH_USE = "For research use only. Not for diagnostic use."

#: Styles every report page shares; a writer adds its own through ``html_page(extra_css=...)``.
BASE_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;color:#222;
margin:1.5em auto;padding:0 1em;max-width:1150px}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.subtitle{color:#555;margin-top:0}
.ruo{background:#fff3cd;border:1px solid #e0c060;padding:.5em .8em;border-radius:4px}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 7px;vertical-align:top}
th{background:#f0f0f0}
.small{font-size:.8em;color:#555}
pre{font-size:.75em;background:#f7f7f7;padding:.6em;overflow-x:auto;white-space:pre-wrap}
img{max-width:100%}figure{display:inline-block;margin:6px}
footer{margin-top:2em}
"""


def esc(x: Any) -> str:
    """HTML-escaped text of a value (quotes included, so it is safe in attributes too).

    Parameters
    ----------
    x
        Any value; ``None`` gives the empty string, anything else its ``str``.

    Returns
    -------
    str
        The escaped text.
    """
    return html.escape("" if x is None else str(x))


def num(x: Any, nd: int = 1, *, missing: str = "–") -> str:
    """A number with ``nd`` decimals, or ``missing`` for ``None``, NaN and infinities.

    A report never shows "nan": an undefined value (a proportion of zero cells) reads as a dash.

    Parameters
    ----------
    x
        The number (or ``None``).
    nd
        Decimals.
    missing
        Text for a missing or non-finite value.

    Returns
    -------
    str
        The formatted number.
    """
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return missing
    return f"{x:.{nd}f}"


def table(head: Sequence[str], rows: Iterable[str], *, empty: str | None = None) -> str:
    """An HTML table: a header row of plain-text column names, then the given rows.

    Parameters
    ----------
    head
        Column names, plain text (escaped here).
    rows
        Body rows, each already an HTML ``<tr>…</tr>`` string built (and escaped) by the writer.
    empty
        Plain text shown in one full-width row when there are no rows; ``None`` leaves the body empty.

    Returns
    -------
    str
        The ``<table>`` element.
    """
    body = "".join(rows)
    if not body and empty is not None:
        body = f"<tr><td colspan={len(head)}>{esc(empty)}</td></tr>"
    header = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><tr>{header}</tr>{body}</table>"


def data_uri(data: bytes, mime: str = "image/png") -> str:
    """A ``data:`` URI embedding ``data``, so that a page needs no other file.

    Parameters
    ----------
    data
        The file's bytes (a PNG figure, a JPEG thumbnail).
    mime
        Its media type.

    Returns
    -------
    str
        ``data:<mime>;base64,<data>``, for an ``src`` attribute.
    """
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _footer(provenance: dict[str, Any] | None) -> str:
    prov = provenance if provenance is not None else {}
    # The version that wrote the record when it says so (it wrote the page too); else this one.
    line = [f"hemotwin {esc(prov.get('hemotwin_version', __version__))}"]
    line += [esc(prov[k]) for k in ("command", "created_utc") if prov.get(k)]
    record = ("" if provenance is None
              else f"<pre>{esc(json.dumps(provenance, indent=2, default=str))}</pre>\n")
    return (f"<footer>\n<h2>Provenance</h2>\n<p class=small>{' · '.join(line)}</p>\n{record}"
            f"<p class=ruo><b>{esc(RESEARCH_USE)}</b></p>\n</footer>")


def html_page(title: str, body_html: str, *, heading: str | None = None, subtitle: str | None = None,
              notice: str = "", provenance: dict[str, Any] | None = None, extra_css: str = "") -> str:
    """A complete, self-contained HTML report page around ``body_html``.

    The page is: the head (UTF-8, ``title``, :data:`BASE_CSS` then ``extra_css``), a header with the
    heading, the optional subtitle and the research-use banner, the body, and a footer with the
    provenance (package version, command, date and the whole record) and the banner again.

    Parameters
    ----------
    title
        The document title, plain text (escaped here).
    body_html
        The report's own content, HTML (the writer escapes what it puts in).
    heading
        The page's ``<h1>``, plain text; ``title`` when not given.
    subtitle
        A line under the heading, plain text.
    notice
        Plain text that follows :data:`RESEARCH_USE` in the top banner (what the report is, who must
        review it).
    provenance
        The provenance record (:func:`hemotwin.io.provenance.provenance` or any JSON-ready dict),
        shown in full in the footer; ``None`` shows only the package version.
    extra_css
        The writer's own styles, appended to the base CSS.

    Returns
    -------
    str
        The HTML document.
    """
    sub = f"<p class=subtitle>{esc(subtitle)}</p>\n" if subtitle else ""
    note = f" {esc(notice)}" if notice else ""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{BASE_CSS}{extra_css}</style></head>
<body>
<header>
<h1>{esc(title if heading is None else heading)}</h1>
{sub}<p class=ruo><b>{esc(RESEARCH_USE)}</b>{note}</p>
</header>
<main>
{body_html}
</main>
{_footer(provenance)}
</body></html>
"""
