"""Analysis reports: ``report.json`` (stable schema, docs/report_schema.md) and a self-contained ``report.html``.

The HTML page needs no network and no other file: styles are inline and every cell thumbnail is a
base64 JPEG. It shows the headline, the flags with the rule that fired and its source, the
differential with its intervals (plain and, when calibrated, corrected), a gallery of every
classified cell grouped by call with its confidence, the review list, what was skipped and why,
quality notes, the research-use-only statement and the provenance.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from hemotwin.taxonomy import CLASS_CODES, CLASS_NAMES

__all__ = ["json_ready", "render_html", "write_report"]


def json_ready(obj: Any) -> Any:
    """A copy of ``obj`` that strict JSON accepts: NaN and infinities become None, tuples lists,
    NumPy scalars Python numbers; keys starting with ``_`` (in-memory extras) are dropped."""
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
    """Write ``report.json`` and ``report.html`` for an analysis result into ``out_dir`` (which must exist)."""
    out = Path(out_dir)
    js = out / "report.json"
    js.write_text(json.dumps(json_ready(result), indent=2, allow_nan=False) + "\n")
    page = out / "report.html"
    page.write_text(render_html(result), encoding="utf-8")
    return {"json": js, "html": page}


# ------------------------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5em auto;max-width:1100px;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
.ruo{background:#fff3cd;border:1px solid #e0c060;padding:.5em .8em;border-radius:4px;font-weight:600}
.summary{font-size:1.05em;background:#f4f6fa;padding:.6em .8em;border-radius:4px}
table{border-collapse:collapse;font-size:.9em}td,th{border:1px solid #ddd;padding:3px 7px;text-align:right}
th{background:#f0f0f0}td.l,th.l{text-align:left}
.positive{color:#a00;font-weight:700}.indeterminate{color:#a60;font-weight:700}.negative{color:#070}
.gal{display:flex;flex-wrap:wrap;gap:4px;margin-bottom:.6em}.cell{width:70px;font-size:.7em;text-align:center}
.cell img{width:64px;height:64px;display:block;margin:auto;border:2px solid #ccc}.cell.ref img{border-color:#e09000}
.small{font-size:.8em;color:#555}pre{font-size:.75em;background:#f7f7f7;padding:.6em;overflow-x:auto}
"""


def _e(x: Any) -> str:
    return html.escape(str(x))


def _num(x: Any, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{nd}f}"


def _diff_table(result: dict[str, Any]) -> str:
    plain = {r["code"]: r for r in result["differential"]["rows"]}
    corr = {r["name"]: r for r in (result["corrected"] or {}).get("rows", [])}
    head = ("<tr><th class=l>class</th><th>count</th><th>%</th><th>95 % CI (calls)</th>"
            + ("<th>% corrected</th><th>95 % CI corrected</th>" if corr else "") + "</tr>")
    rows = []
    for code in CLASS_CODES:
        r = plain[code]
        e = r["estimate"]
        unit = " /100" if e["per_100"] else ""
        cells = (f"<td class=l>{_e(code)} – {_e(CLASS_NAMES[code])}</td><td>{r['count']}</td>"
                 f"<td>{_num(e['percent'])}{unit}</td><td>{_num(e['lo'])}–{_num(e['hi'])}</td>")
        if corr:
            c = corr[code]
            cells += f"<td>{_num(c['percent'])}{unit}</td><td>{_num(c['lo'])}–{_num(c['hi'])}</td>"
        rows.append(f"<tr>{cells}</tr>")
    for key, label in (("blasts", "blasts (MYO + MOB)"), ("blasts_with_equivalents", "blasts + blast equivalents")):
        e = result["differential"][key]
        cells = (f"<td class=l><b>{_e(label)}</b></td><td>{e['count']}</td><td><b>{_num(e['percent'])}</b></td>"
                 f"<td><b>{_num(e['lo'])}–{_num(e['hi'])}</b></td>")
        if corr:
            c = result["corrected"][key]
            cells += f"<td><b>{_num(c['percent'])}</b></td><td><b>{_num(c['lo'])}–{_num(c['hi'])}</b></td>"
        rows.append(f"<tr>{cells}</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def _flags_table(result: dict[str, Any]) -> str:
    rows = []
    for f in result["flags"]:
        extra = ""
        if f["state"] == "indeterminate":
            extra = (f"<br><span class=small>{f['additional_cells']:,} more cells would decide it "
                     f"({_e(f['additional_cells_method'])})</span>" if f["additional_cells"] is not None
                     else "<br><span class=small>not decidable by counting more cells at the observed "
                     "proportion</span>")
        est = "<br>".join(f"{_e(e['name'])}: {_num(e['percent'])}{' /100' if e['per_100'] else ' %'} "
                          f"({_num(e['lo'])}–{_num(e['hi'])}; {_e(e['method'])})" for e in f["estimates"])
        rows.append(f"<tr><td class=l><b>{_e(f['title'])}</b><br><span class=small>{_e(f['severity'])}</span></td>"
                    f"<td class='l {f['state']}'>{_e(f['state'])}{extra}</td><td class=l>{est}</td>"
                    f"<td class=l>{_e(f['rule'])}<br><span class=small>Source: {_e(f['source'])}</span></td></tr>")
    return ("<table><tr><th class=l>flag</th><th class=l>state</th><th class=l>estimate</th>"
            f"<th class=l>rule (and source)</th></tr>{''.join(rows)}</table>")


def _advice(result: dict[str, Any]) -> str:
    a = result.get("counting_advice")
    if not a:
        return ""
    return f"<p><b>Counting advice.</b> {_e(a['statement'])} <span class=small>Policy: {_e(a['policy'])}.</span></p>"


def _gallery(result: dict[str, Any]) -> str:
    cells = result.get("_cells") or []
    if not cells:
        return "<p>No classified cells.</p>"
    parts = []
    for code in CLASS_CODES:
        group = sorted((c for c in cells if c.call == code), key=lambda c: -c.confidence)
        if not group:
            continue
        items = []
        for c in group:
            img = (f"<img alt='cell {c.id}' src='data:image/jpeg;base64,{base64.b64encode(c.thumb).decode()}'>"
                   if c.thumb else "")
            items.append(f"<div class='cell{' ref' if c.referred else ''}' title='{_e(c.field)} "
                         f"{c.centroid}'>{img}#{c.id} {c.confidence:.2f}</div>")
        n_ref = sum(c.referred for c in group)
        parts.append(f"<h3>{_e(code)} – {_e(CLASS_NAMES[code])}: {len(group)} cell(s)"
                     f"{f', {n_ref} referred (orange)' if n_ref else ''}</h3><div class=gal>{''.join(items)}</div>")
    return "".join(parts)


def _review(result: dict[str, Any]) -> str:
    rev = result["review"]
    if not rev:
        return "<p>No cell below the confidence threshold.</p>"
    rows = "".join(f"<tr><td>#{r['cell_id']}</td><td class=l>{_e(r['field'])}</td><td class=l>{_e(r['call'])}</td>"
                   f"<td>{r['confidence']:.2f}</td><td class=l>"
                   f"{', '.join(f'{lab} {p:.2f}' for lab, p in r['top'])}</td></tr>" for r in rev)
    return ("<table><tr><th>cell</th><th class=l>field</th><th class=l>call</th><th>confidence</th>"
            f"<th class=l>top classes</th></tr>{rows}</table>")


def _fields(result: dict[str, Any]) -> str:
    s = result["sample"]
    rows = []
    for f in s["fields"]:
        why = f["reason"] or "; ".join(f["quality"] + f["notes"])
        cls = "l indeterminate" if f["status"] == "skipped" else "l"
        rows.append(f"<tr><td class=l>{_e(f['name'])}</td><td class='{cls}'>{_e(f['status'])}</td>"
                    f"<td>{_num(f['um_per_px'], 4)}</td><td class=l>{_e(f['um_per_px_source'] or '')}</td>"
                    f"<td>{f['n_classified']}</td><td>{f['n_border_excluded']}</td><td class=l>{_e(why)}</td></tr>")
    return ("<table><tr><th class=l>field</th><th class=l>status</th><th>µm/px</th><th class=l>pixel size from</th>"
            "<th>cells</th><th>cut by edge</th><th class=l>reason / quality notes</th></tr>"
            + "".join(rows) + "</table>")


def render_html(result: dict[str, Any]) -> str:
    """The self-contained HTML page of an analysis result."""
    s = result["sample"]
    c = result["counts"]
    skipped = s["skipped"]
    corr = result["corrected"]
    notes = "".join(f"<li>{_e(n)}</li>" for n in s["notes"])
    skipped_html = ("<ul>" + "".join(f"<li><b>{_e(k['field'])}</b>: {_e(k['reason'])}</li>" for k in skipped)
                    + "</ul>") if skipped else "<p>No field was skipped.</p>"
    prov = json.dumps({k: v for k, v in (result.get("provenance") or {}).items()}, indent=1, default=str)
    method = (f"<p class=small>Corrected columns: {_e(corr['note'])} Calibration: {_e(result['calibration_note'])}."
              "</p>" if corr else f"<p class=small>{_e(result['calibration_note'])}.</p>")
    t = result.get("timing", {})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>hemotwin smear analysis</title><style>{_CSS}</style></head>
<body>
<h1>Smear analysis: {_e(Path(s['path']).name)}</h1>
<p class=ruo>{_e(result['research_use_only'])} Results come from an automated model and must be reviewed by a
qualified morphologist.</p>
<p class=summary>{_e(result['summary'])}</p>
<p class=small>{s['n_fields']} field(s): {s['n_fields_analysed']} analysed, {s['n_fields_without_wbc']} without
white cells, {s['n_fields_skipped']} skipped. {c['n_detected']} white cells detected, {c['n_classified']} classified,
{c['n_counted']} counted, {c['n_referred']} referred, {c['n_border_excluded']} cut by the field edge (not counted).
Specimen: {_e(result['settings']['specimen'])}. Time {_num(t.get('seconds'), 1)} s.</p>
<h2>Flags</h2>
{_flags_table(result)}
{_advice(result)}
<p class=small>A flag is positive when its whole 95 % interval satisfies the rule, negative when none of it
does, indeterminate when the interval straddles the threshold (CLINICAL_RULES §2).</p>
<h2>Differential</h2>
<p class=small>Percent of leukocytes (NRBC and smudge cells per 100 leukocytes). Plain columns: exact
Clopper–Pearson 95 % intervals on the counted calls (confidence ≥ {result['settings']['min_confidence']}); they do
not include classifier error.</p>
{method}
{_diff_table(result)}
<h2>Review list ({len(result['review'])} cells below the confidence threshold, not counted)</h2>
{_review(result)}
<h2>Gallery: every classified cell by call (confidence under each)</h2>
{_gallery(result)}
<h2>Fields and quality</h2>
<h3>Skipped</h3>{skipped_html}
<h3>Notes</h3><ul>{notes or '<li>none</li>'}</ul>
{_fields(result)}
<h2>Model</h2>
<p class=small>{_e(result['model']['path'])} (sha256 {_e(result['model']['sha256'][:16])}…), labels
{_e(', '.join(result['model']['labels']))}; input {result['model']['input_size']} px at {result['model']['um_per_px']}
µm/px.</p>
<h2>Provenance</h2>
<pre>{_e(prov)}</pre>
<p class=ruo>{_e(result['research_use_only'])}</p>
</body></html>
"""
