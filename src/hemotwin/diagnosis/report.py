"""Analysis reports: ``report.json`` (stable schema, docs/report_schema.md) and a self-contained ``report.html``.

The HTML page needs no network and no other file: styles are inline and every cell image is a
base64 JPEG. It shows the headline and its warnings (a count under 100 cells, nothing counted), the
flags with the rule that fired and its full source, the differential with its intervals (plain and,
when calibrated, corrected), a gallery of every classified cell grouped by call with its confidence
(a 64 px thumbnail; hovering over it, or clicking it, shows the cell at the field's own resolution,
where nucleoli and Auer rods can be seen), the review list, what was skipped and why, quality notes,
the research-use-only statement and the provenance.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hemotwin.diagnosis.classify import NATIVE_VIEW_MAX_PX
from hemotwin.io.report import data_uri, esc, html_page, num
from hemotwin.taxonomy import CLASS_CODES, CLASS_NAMES

__all__ = ["json_ready", "render_html", "write_report"]


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON accepts.

    NaN and infinities become None, tuples lists, NumPy scalars Python numbers, paths text; keys
    starting with ``_`` (in-memory extras) are dropped.

    Parameters
    ----------
    obj
        A report record or any part of it.

    Returns
    -------
    Any
        The JSON-ready copy.
    """
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_ready(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_report(result: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.json`` and ``report.html`` for an analysis result into ``out_dir``.

    Parameters
    ----------
    result
        The analysis record (:class:`hemotwin.diagnosis.analyze.AnalysisEngine` output, with
        ``provenance``; ``_cells`` feeds the gallery and is left out of the JSON).
    out_dir
        An existing folder.

    Returns
    -------
    dict
        ``json`` and ``html``: the paths written.
    """
    out = Path(out_dir)
    js = out / "report.json"
    js.write_text(json.dumps(json_ready(result), indent=2, allow_nan=False) + "\n")
    page = out / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    return {"json": js, "html": page}


# ------------------------------------------------------------------------------------ HTML

# The page's own styles; the frame (fonts, tables, banner, provenance) is io.report's BASE_CSS.
_CSS = """
td,th{text-align:right}td.l,th.l{text-align:left}
.summary{font-size:1.05em;background:#f4f6fa;padding:.6em .8em;border-radius:4px}
.positive{color:#a00;font-weight:700}.indeterminate{color:#a60;font-weight:700}.negative{color:#070}
.gal{display:flex;flex-wrap:wrap;gap:4px;margin-bottom:.6em}.cell{width:70px;font-size:.7em;text-align:center}
.cell img.t{width:64px;height:64px;display:block;margin:auto;border:2px solid #ccc}
.cell.ref img.t{border-color:#e09000}
.cell{position:relative;cursor:zoom-in}.cell:focus{outline:2px solid #36c}
.cell .zoom{display:none;position:absolute;z-index:10;left:0;top:66px;background:#fff;border:1px solid #888;
padding:4px;box-shadow:0 2px 8px rgba(0,0,0,.3);font-size:1.2em;width:max-content;text-align:left}
.cell:hover .zoom,.cell:focus .zoom,.cell:focus-within .zoom{display:block}
.zoom img{display:block;min-width:192px;image-rendering:pixelated}
.warn{background:#fff4e0;border-left:4px solid #e09000;padding:.4em .8em}
"""
#: What follows the research-use notice in the banner.
_NOTICE = "Results come from an automated model and must be reviewed by a qualified morphologist."


def _diff_table(result: dict[str, Any]) -> str:
    plain = {r["code"]: r for r in result["differential"]["rows"]}
    corr = {r["name"]: r for r in (result["corrected"] or {}).get("rows", [])}
    head = ("<tr><th class=l>class</th><th>count</th><th>of them unsure</th><th>%</th><th>95 % CI (calls)</th>"
            + ("<th>% corrected</th><th>95 % CI corrected</th>" if corr else "") + "</tr>")
    rows = []
    for code in CLASS_CODES:
        r = plain[code]
        e = r["estimate"]
        unit = " /100" if e["per_100"] else ""
        cells = (f"<td class=l>{esc(code)} – {esc(CLASS_NAMES[code])}</td><td>{r['count']}</td>"
                 f"<td>{r.get('unsure', 0) or ''}</td><td>{num(e['percent'])}{unit}</td>"
                 f"<td>{num(e['lo'])}–{num(e['hi'])}</td>")
        if corr:
            c = corr[code]
            cells += f"<td>{num(c['percent'])}{unit}</td><td>{num(c['lo'])}–{num(c['hi'])}</td>"
        rows.append(f"<tr>{cells}</tr>")
    for key, label in (("blasts", "blasts (MYO + MOB)"), ("blasts_with_equivalents", "blasts + blast equivalents")):
        e = result["differential"][key]
        cells = (f"<td class=l><b>{esc(label)}</b></td><td>{e['count']}</td><td></td>"
                 f"<td><b>{num(e['percent'])}</b></td>"
                 f"<td><b>{num(e['lo'])}–{num(e['hi'])}</b></td>")
        if corr:
            c = result["corrected"][key]
            cells += f"<td><b>{num(c['percent'])}</b></td><td><b>{num(c['lo'])}–{num(c['hi'])}</b></td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _flags_table(result: dict[str, Any]) -> str:
    if not result["flags"]:
        return ("<p class=warn>Flags not assessable: no leukocyte was counted, so no proportion (and no rule on "
                "one) can be evaluated.</p>")
    rows = []
    for f in result["flags"]:
        extra = ""
        if f["state"] == "indeterminate" and f.get("review_cells"):
            why = "; ".join(ev["reason"] for ev in f.get("evidence", []) if ev.get("reason"))
            extra = (f"<br><span class=small>needs review: {f['review_cells']:,} cells ({esc(why)})</span>")
        elif f["state"] == "indeterminate":
            extra = (f"<br><span class=small>{f['additional_cells']:,} more cells would decide it "
                     f"({esc(f['additional_cells_method'])})</span>" if f["additional_cells"] is not None
                     else "<br><span class=small>not decidable by counting more cells at the observed "
                     "proportion</span>")
        est = "<br>".join(f"{esc(e['name'])}: {num(e['percent'])}{' /100' if e['per_100'] else ' %'} "
                          f"({num(e['lo'])}–{num(e['hi'])}; {esc(e['method'])})" for e in f["estimates"])
        rows.append(f"<tr><td class=l><b>{esc(f['title'])}</b><br><span class=small>{esc(f['severity'])}</span></td>"
                    f"<td class='l {f['state']}'>{esc(f['state'])}{extra}</td><td class=l>{est}</td>"
                    f"<td class=l>{esc(f['rule'])}<br><span class=small>Source: {esc(f['source'])}</span></td></tr>")
    return ("<table><tr><th class=l>flag</th><th class=l>state</th><th class=l>estimate</th>"
            f"<th class=l>rule (and source)</th></tr>{''.join(rows)}</table>")


def _advice(result: dict[str, Any]) -> str:
    a = result.get("counting_advice")
    if not a:
        return ""
    return f"<p><b>Counting advice.</b> {esc(a['statement'])} <span class=small>Policy: {esc(a['policy'])}.</span></p>"


def _gallery(result: dict[str, Any]) -> str:
    cells = result.get("_cells") or []
    if not cells:
        return "<p>No classified cells.</p>"
    parts = []
    for code in CLASS_CODES:
        group = sorted((c for c in cells if c.call == code), key=lambda c: -c.confidence)
        if not group:
            continue
        items = [_cell_item(c) for c in group]
        n_ref = sum(c.referred for c in group)
        parts.append(f"<h3>{esc(code)} – {esc(CLASS_NAMES[code])}: {len(group)} cell(s)"
                     f"{f', {n_ref} referred (orange)' if n_ref else ''}</h3><div class=gal>{''.join(items)}</div>")
    return "".join(parts)


def _cell_item(c: Any) -> str:
    """One gallery entry: the thumbnail and, on hover or click (focus), the cell at native resolution."""
    img = f"<img class=t alt='cell {c.id}' src='{data_uri(c.thumb, 'image/jpeg')}'>" if c.thumb else ""
    zoom = ""
    if getattr(c, "native", None):
        px = int(getattr(c, "native_px", 0))
        um = getattr(c, "um_per_px", None)
        scale = f"{px} px at {um:.4g} µm/px" if um else f"{px} px"
        zoom = (f"<span class=zoom><img alt='cell {c.id}, native resolution' "
                f"src='{data_uri(c.native, 'image/jpeg')}'>#{c.id} {esc(c.call)} {c.confidence:.2f}, "
                f"{esc(c.field)}; {scale}</span>")
    return (f"<div class='cell{' ref' if c.referred else ''}' tabindex=0 title='{esc(c.field)} {c.centroid}'>"
            f"{img}#{c.id} {c.confidence:.2f}{zoom}</div>")


def _warnings(result: dict[str, Any]) -> str:
    warns = result.get("warnings") or []
    return "".join(f"<p class=warn><b>Warning.</b> {esc(w['message'])}</p>" for w in warns)


def _review(result: dict[str, Any]) -> str:
    rev = result["review"]
    if not rev:
        return "<p>No cell below the confidence threshold and no unconfirmed rare-class call.</p>"
    rows = "".join(f"<tr><td>#{r['cell_id']}</td><td class=l>{esc(r['field'])}</td><td class=l>{esc(r['call'])}</td>"
                   f"<td>{r['confidence']:.2f}</td><td class=l>"
                   f"{', '.join(f'{lab} {p:.2f}' for lab, p in r['top'])}</td>"
                   f"<td class=l>{esc(r.get('reason', ''))}</td></tr>" for r in rev)
    return ("<table><tr><th>cell</th><th class=l>field</th><th class=l>call</th><th>confidence</th>"
            f"<th class=l>top classes</th><th class=l>reason</th></tr>{rows}</table>")


def _fields(result: dict[str, Any]) -> str:
    s = result["sample"]
    rows = []
    for f in s["fields"]:
        why = f["reason"] or "; ".join(f["quality"] + f["notes"])
        cls = "l indeterminate" if f["status"] == "skipped" else "l"
        rows.append(f"<tr><td class=l>{esc(f['name'])}</td><td class='{cls}'>{esc(f['status'])}</td>"
                    f"<td>{num(f['um_per_px'], 4)}</td><td class=l>{esc(f['um_per_px_source'] or '')}</td>"
                    f"<td>{f['n_classified']}</td><td>{f['n_border_excluded']}</td><td class=l>{esc(why)}</td></tr>")
    return ("<table><tr><th class=l>field</th><th class=l>status</th><th>µm/px</th><th class=l>pixel size from</th>"
            "<th>cells</th><th>cut by edge</th><th class=l>reason / quality notes</th></tr>"
            + "".join(rows) + "</table>")


def render_html(result: dict[str, Any]) -> str:
    """The self-contained HTML page of an analysis result.

    The body (headline, flags, differential, review list, gallery, fields, model) is this module's; the
    frame (banner, styles, provenance footer) is :func:`hemotwin.io.report.html_page`.

    Parameters
    ----------
    result
        The analysis record, as for :func:`write_report`.

    Returns
    -------
    str
        The HTML document.
    """
    s = result["sample"]
    c = result["counts"]
    skipped = s["skipped"]
    corr = result["corrected"]
    notes = "".join(f"<li>{esc(n)}</li>" for n in s["notes"])
    skipped_html = ("<ul>" + "".join(f"<li><b>{esc(k['field'])}</b>: {esc(k['reason'])}</li>" for k in skipped)
                    + "</ul>") if skipped else "<p>No field was skipped.</p>"
    method = (f"<p class=small>Corrected columns: {esc(corr['note'])} Calibration: {esc(result['calibration_note'])}."
              "</p>" if corr else f"<p class=small>{esc(result['calibration_note'])}.</p>")
    t = result.get("timing", {})
    body = f"""<p class=summary>{esc(result['summary'])}</p>
{_warnings(result)}
<p class=small>{s['n_fields']} field(s): {s['n_fields_analysed']} analysed, {s['n_fields_without_wbc']} without
white cells, {s['n_fields_skipped']} skipped. {c['n_detected']} white cells detected, {c['n_classified']} classified,
{c['n_counted']} counted, {c['n_referred']} referred, {c['n_border_excluded']} cut by the field edge (not counted).
Specimen: {esc(result['settings']['specimen'])}. Time {num(t.get('seconds'), 1)} s.</p>
<h2>Flags</h2>
{_flags_table(result)}
{_advice(result)}
<p class=small>A flag is positive when its whole 95 % interval satisfies the rule, negative when none of it
does, indeterminate when the interval straddles the threshold (docs/clinical_rules.md §2). A flag that reads
a rare class
(blasts, promyelocytes, immature granulocytes, NRBC, smudge cells, eosinophils, basophils) is positive only on
confident calls (top probability ≥ {num(result['settings'].get('rare_confidence'), 2)}, at least three cells) and
only if the unsure cells could not tip it; otherwise it is indeterminate and needs review.</p>
<h2>Differential</h2>
<p class=small>Percent of leukocytes (NRBC and smudge cells per 100 leukocytes). Plain columns: exact
Clopper–Pearson 95 % intervals on the counted calls (confidence ≥ {result['settings']['min_confidence']}); they do
not include classifier error.</p>
{method}
{_diff_table(result)}
<h2>Review list ({len(result['review'])} cells: {c['n_referred']} below the confidence threshold, not counted;
{c.get('n_unsure', 0)} rare-class calls without the confidence a flag needs)</h2>
{_review(result)}
<h2>Gallery: every classified cell by call (confidence under each)</h2>
<p class=small>Hover over a cell, or click it, to see it at the field's own resolution (larger crops are
scaled down to {NATIVE_VIEW_MAX_PX} px; small ones are enlarged pixel for pixel).</p>
{_gallery(result)}
<h2>Fields and quality</h2>
<h3>Skipped</h3>{skipped_html}
<h3>Notes</h3><ul>{notes or '<li>none</li>'}</ul>
{_fields(result)}
<h2>Model</h2>
<p class=small>{esc(result['model']['path'])} (sha256 {esc(result['model']['sha256'][:16])}…), labels
{esc(', '.join(result['model']['labels']))}; input {result['model']['input_size']} px at {result['model']['um_per_px']}
µm/px.</p>
"""
    return html_page("hemotwin smear analysis", body, heading=f"Smear analysis: {Path(s['path']).name}",
                     notice=_NOTICE, provenance=result.get("provenance") or {}, extra_css=_CSS)
