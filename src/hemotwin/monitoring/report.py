"""Patient outputs: timeline figure (PNG), ``timeline.json`` and a self-contained HTML page.

The figure is drawn with Pillow rather than matplotlib: importing matplotlib alone takes ~0.5-0.7 s on
the project's machines, which would break the < 1 s budget of ``hemotwin monitor PATIENT.json``; a
Pillow drawing of the same content takes ~0.1 s. Panels: treatment lines and response bands; blood
counts (log axis, CR/CRh thresholds); blasts (5 % line); MRD (log axis, LOD markers for censored
results, §5 thresholds); alerts as numbered vertical marks.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from hemotwin.io.report import RESEARCH_USE, data_uri, esc, html_page, table
from hemotwin.monitoring.records import PatientResult
from hemotwin.monitoring.timeline import Timeline

#: Call categories by kind of response, in the order of the legend. Only CR, CRh and CRi are remissions (greens);
#: MLFS (no count recovery) and PR are responses short of a remission (yellows), never drawn as remissions.
RESPONSE_GROUPS: dict[str, tuple[str, ...]] = {
    "remission (CR/CRh/CRi)": ("CR", "CRh", "CRi"),
    "response, not remission (MLFS/PR)": ("MLFS", "PR"),
    "MRD relapse": ("MRD relapse",),
    "relapse/refractory/no response": ("hematologic relapse", "relapsed disease", "refractory", "progression",
                                       "no response"),
    "not evaluable/pre-treatment": ("not evaluable", "pre-treatment"),
}
CATEGORY_COLOURS = {
    "CR": (46, 160, 67), "CRh": (120, 190, 70), "CRi": (170, 205, 90), "MLFS": (240, 222, 120),
    "PR": (240, 190, 100), "no response": (235, 150, 90), "refractory": (200, 60, 60), "progression": (170, 40, 40),
    "hematologic relapse": (190, 30, 30), "relapsed disease": (160, 30, 30), "MRD relapse": (230, 110, 40),
    "not evaluable": (215, 215, 215), "pre-treatment": (190, 200, 225),
}
SEVERITY_COLOURS = {"info": (60, 110, 200), "warning": (225, 140, 0), "critical": (200, 20, 20)}
SERIES_COLOURS = [(31, 119, 180), (214, 39, 40), (148, 103, 189), (44, 160, 44), (140, 86, 75), (227, 119, 194)]


def _plain(x: Any) -> Any:
    if isinstance(x, date):
        return x.isoformat()
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def result_to_dict(result: PatientResult) -> dict[str, Any]:
    """JSON-ready dict of a result (dates as ISO text); no pydantic schema is built on this path (CLI speed)."""
    return _plain(dataclasses.asdict(result))


@functools.cache
def _adapter() -> TypeAdapter[PatientResult]:
    return TypeAdapter(PatientResult)


def result_from_json(text: str | bytes) -> PatientResult:
    """Re-read a result written by :func:`result_to_dict` (the ``result`` part of ``timeline.json``)."""
    return _adapter().validate_json(text)


# ----------------------------------------------------------------------------------------------- figure


class _Axis:
    """Pixel mapping of one panel: dates on x (shared), linear or log10 on y."""

    def __init__(self, box: tuple[int, int, int, int], d0: date, d1: date, y0: float, y1: float, log: bool):
        self.box, self.d0, self.span = box, d0, max(1, (d1 - d0).days)
        self.log = log
        self.y0, self.y1 = (math.log10(y0), math.log10(y1)) if log else (y0, y1)

    def x(self, d: date) -> float:
        left, _, right, _ = self.box
        return left + (right - left) * (d - self.d0).days / self.span

    def y(self, v: float) -> float:
        _, top, _, bottom = self.box
        t = math.log10(max(v, 1e-12)) if self.log else v
        t = min(max(t, self.y0), self.y1)
        return bottom - (bottom - top) * (t - self.y0) / (self.y1 - self.y0)


def _month_ticks(d0: date, d1: date) -> list[date]:
    months = (d1.year - d0.year) * 12 + d1.month - d0.month + 1
    step = 1 if months <= 14 else 2 if months <= 26 else 3 if months <= 40 else 6 if months <= 80 else 12
    out, y, m = [], d0.year, d0.month
    while True:
        d = date(y, m, 1)
        if d > d1:
            return out
        if d >= d0 and (m - 1) % step == 0:
            out.append(d)
        m += 1
        if m == 13:
            y, m = y + 1, 1


def timeline_figure(timeline: Timeline, result: PatientResult, *, width: int = 1100) -> bytes:
    """PNG bytes of the patient's timeline figure (see module docstring)."""
    from PIL import Image, ImageDraw, ImageFont

    height = int(width * 0.78)
    img = Image.new("RGB", (width, height), "white")
    dr = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=12)
    small = ImageFont.load_default(size=10)
    title = ImageFont.load_default(size=15)

    tps = timeline.timepoints
    dates = [tp.date for tp in tps] + [ln.start for ln in timeline.treatment_lines] + [timeline.diagnosis.date]
    for k in result.kinetics:
        if k.projected_date is not None and k.projected_date <= max(dates) + timedelta(days=180):
            dates.append(k.projected_date)
    d0 = min(dates) - timedelta(days=10)
    d1 = max(dates) + timedelta(days=20)
    left, right = 90, width - 30
    dr.text((left, 8), f"{timeline.patient}: {timeline.diagnosis.disease}", fill="black", font=title)
    dr.text((left, 28), f"{result.current_status}    ({RESEARCH_USE})", fill=(90, 90, 90), font=small)

    # Treatment lines and response bands.
    lane = (left, 48, right, 92)
    ax = _Axis(lane, d0, d1, 0, 1, False)
    for i, ln in enumerate(timeline.treatment_lines):
        end = timeline.treatment_lines[i + 1].start if i + 1 < len(timeline.treatment_lines) else d1
        x0, x1 = ax.x(ln.start), ax.x(end)
        col = (70, 90, 160) if ln.intensity == "intensive" else (110, 150, 200)
        dr.rectangle((x0, 50, x1, 66), fill=col)
        for c in ln.courses:
            dr.line((ax.x(c), 50, ax.x(c), 66), fill="white", width=2)
        dr.text((x0 + 4, 52), f"{ln.regimen} ({ln.intensity})", fill="white", font=small)
    calls = result.calls
    for i, c in enumerate(calls):
        end = calls[i + 1].date if i + 1 < len(calls) else c.date + timedelta(days=14)
        dr.rectangle((ax.x(c.date), 72, max(ax.x(end), ax.x(c.date) + 2), 90),
                     fill=CATEGORY_COLOURS.get(c.category, (200, 200, 200)))
    dr.text((8, 52), "treatment", fill="black", font=small)
    dr.text((8, 75), "response", fill="black", font=small)
    # One swatch per group (MLFS is not drawn as a remission), right-aligned above the first panel's title.
    x = right - sum(24 + int(dr.textlength(g, font=small)) for g in RESPONSE_GROUPS) + 10
    for group, cats in RESPONSE_GROUPS.items():
        dr.rectangle((x, 95, x + 10, 103), fill=CATEGORY_COLOURS[cats[0]])
        dr.text((x + 14, 93), group, fill="black", font=small)
        x += 24 + int(dr.textlength(group, font=small))

    panel_h = (height - 150 - 3 * 24) // 3
    tops = [110 + i * (panel_h + 24) for i in range(3)]
    boxes = [(left, t, right, t + panel_h) for t in tops]

    def frame(box: tuple[int, int, int, int], a: _Axis, label: str, ticks: list[tuple[float, str]]) -> None:
        dr.rectangle(box, outline=(120, 120, 120))
        for v, txt in ticks:
            yy = a.y(v)
            dr.line((box[0], yy, box[2], yy), fill=(235, 235, 235))
            dr.text((box[0] - 6, yy), txt, fill="black", font=small, anchor="rm")
        dr.text((box[0], box[1] - 15), label, fill="black", font=font)

    def ref(a: _Axis, v: float, txt: str, col: tuple[int, int, int]) -> None:
        yy = a.y(v)
        for xx in range(a.box[0], a.box[2], 8):
            dr.line((xx, yy, min(xx + 4, a.box[2]), yy), fill=col)
        dr.text((a.box[2] - 4, yy - 2), txt, fill=col, font=small, anchor="rb")

    def series(a: _Axis, pts: list[tuple[date, float]], col: tuple[int, int, int], shape: str) -> None:
        xy = [(a.x(d), a.y(v)) for d, v in pts]
        if len(xy) > 1:
            dr.line(xy, fill=col, width=2)
        for x, y in xy:
            if shape == "s":
                dr.rectangle((x - 4, y - 4, x + 4, y + 4), fill=col)
            else:
                dr.ellipse((x - 4, y - 4, x + 4, y + 4), fill=col)

    # Counts (log axis).
    a1 = _Axis(boxes[0], d0, d1, 0.01, 1000, True)
    frame(boxes[0], a1, "counts x10^9/L", [(v, f"{v:g}") for v in (0.01, 0.1, 1, 10, 100, 1000)])
    ref(a1, 1.0, "ANC 1.0", (46, 120, 67))
    ref(a1, 0.5, "ANC 0.5", (120, 160, 70))
    ref(a1, 100, "PLT 100", (120, 60, 160))
    ref(a1, 50, "PLT 50", (160, 110, 190))
    for _name, attr, col, shape in (("ANC", "anc_1e9_per_l", (46, 120, 67), "o"),
                                   ("WBC", "wbc_1e9_per_l", (150, 150, 150), "o"),
                                   ("PLT", "platelets_1e9_per_l", (120, 60, 160), "s")):
        pts = [(tp.date, float(getattr(tp, attr))) for tp in tps if getattr(tp, attr) is not None]
        series(a1, [(d, max(v, 0.01)) for d, v in pts], col, shape)
    _legend(dr, boxes[0], [("ANC", (46, 120, 67)), ("WBC", (150, 150, 150)), ("platelets", (120, 60, 160))], small)

    # Blasts (linear).
    top = max([10.0] + [float(tp.marrow_blasts_pct or 0) for tp in tps] + [float(tp.blood_blasts_pct or 0)
                                                                            for tp in tps])
    top = min(100.0, math.ceil(top * 1.1 / 10) * 10)
    a2 = _Axis(boxes[1], d0, d1, 0, top, False)
    frame(boxes[1], a2, "blasts %", [(v, f"{v:g}") for v in _lin_ticks(top)])
    ref(a2, 5.0, "5 %", (200, 60, 60))
    series(a2, [(tp.date, float(tp.marrow_blasts_pct)) for tp in tps if tp.marrow_blasts_pct is not None],
           (200, 60, 60), "s")
    series(a2, [(tp.date, float(tp.blood_blasts_pct)) for tp in tps if tp.blood_blasts_pct is not None],
           (230, 140, 60), "o")
    _legend(dr, boxes[1], [("marrow blasts", (200, 60, 60)), ("blood blasts", (230, 140, 60))], small)

    # MRD (log axis); censored results drawn as open triangles at their LOD, never at zero.
    vals = [p.value_pct for p in result.mrd if p.value_pct and not p.censored] + [
        p.lod_pct for p in result.mrd if p.lod_pct]
    lo = 10.0 ** (math.floor(math.log10(min(vals))) - 1) if vals else 1e-4  # a decade below the lowest mark
    lo = min(lo, 1e-3)
    a3 = _Axis(boxes[2], d0, d1, lo, 100, True)
    frame(boxes[2], a3, "MRD %", [(10.0 ** e, f"{10.0 ** e:g}") for e in range(round(math.log10(lo)), 3)])
    ref(a3, 0.1, "0.1 % (flow/NGS)", (120, 120, 120))
    ref(a3, 2.0, "2 % (qPCR low-level)", (120, 120, 120))
    keys: dict[tuple[str, str, str], tuple[int, int, int]] = {}
    for p in result.mrd:
        keys.setdefault((p.method, p.marker, p.tissue), SERIES_COLOURS[len(keys) % len(SERIES_COLOURS)])
    legend = []
    for (method, marker, tissue), col in keys.items():
        pts = [p for p in result.mrd if (p.method, p.marker, p.tissue) == (method, marker, tissue)]
        run: list[tuple[date, float]] = []
        for p in [*pts, None]:  # a censored result breaks the line: no value is drawn through it
            if p is not None and p.unit_mix_suspected:
                continue  # drawn apart below: a value probably in the wrong unit is not joined to the series
            if p is not None and not p.censored and p.value_pct:
                run.append((p.date, p.value_pct))
            elif run:
                series(a3, run, col, "s" if tissue == "blood" else "o")
                run = []
        for p in pts:
            if p.censored and p.lod_pct:
                x, y = a3.x(p.date), a3.y(p.lod_pct)
                dr.polygon([(x - 5, y - 4), (x + 5, y - 4), (x, y + 5)], outline=col, width=2)
            elif p.unit_mix_suspected and p.value_pct:
                x, y = a3.x(p.date), a3.y(p.value_pct)
                dr.rectangle((x - 4, y - 4, x + 4, y + 4), outline=col, width=2)
                dr.text((x + 6, y - 6), "?", fill=col, font=small)
        legend.append((f"{method} {marker} ({tissue})", col))
    for k in result.kinetics:
        if k.projected_date is not None and k.threshold_pct:
            col = keys.get((k.method, k.marker, k.tissue), (0, 0, 0))
            last = next(p for p in reversed(result.mrd)
                        if (p.method, p.marker, p.tissue) == (k.method, k.marker, k.tissue) and p.value_pct
                        and not p.unit_mix_suspected)
            xa, ya, xb, yb = a3.x(last.date), a3.y(last.value_pct or 1), a3.x(k.projected_date), a3.y(k.threshold_pct)
            for i in range(0, 20, 2):
                dr.line((xa + (xb - xa) * i / 20, ya + (yb - ya) * i / 20, xa + (xb - xa) * (i + 1) / 20,
                         ya + (yb - ya) * (i + 1) / 20), fill=col, width=2)
    legend.append(("open triangle: not detected / < LOD (at the LOD)", (90, 90, 90)))
    if any(p.unit_mix_suspected for p in result.mrd):
        legend.append(("open box ?: probably in the wrong unit (not used)", (90, 90, 90)))
    _legend(dr, boxes[2], legend, small)

    # Events: numbered marks through every panel.
    for n, e in enumerate(result.events, start=1):
        if e.severity == "info":
            continue
        x = a1.x(e.date)
        col = SEVERITY_COLOURS[e.severity]
        for box in boxes:
            for yy in range(box[1], box[3], 6):
                dr.line((x, yy, x, min(yy + 3, box[3])), fill=col)
        dr.text((x + 2, boxes[0][1] + 2), str(n), fill=col, font=small)

    # Date axis.
    yb = boxes[2][3]
    for d in _month_ticks(d0, d1):
        x = a3.x(d)
        dr.line((x, yb, x, yb + 4), fill="black")
        dr.text((x, yb + 6), d.strftime("%Y-%m"), fill="black", font=small, anchor="ma")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _lin_ticks(top: float) -> list[float]:
    step = 5 if top <= 20 else 10 if top <= 50 else 20
    return [float(v) for v in range(0, int(top) + 1, step)]


def _legend(dr: Any, box: tuple[int, int, int, int], items: list[tuple[str, tuple[int, int, int]]], font: Any) -> None:
    x = box[0] + 6
    for text, col in items:
        dr.rectangle((x, box[1] + 6, x + 10, box[1] + 14), fill=col)
        dr.text((x + 14, box[1] + 4), text, fill="black", font=font)
        x += 24 + int(dr.textlength(text, font=font))


# ------------------------------------------------------------------------------------------------ HTML


# The page's own styles; the frame (fonts, tables, banner, provenance) is io.report's BASE_CSS.
_CSS = "td,th{font-size:13px}.s{font-size:11px;color:#444}"
#: What follows the research-use notice in the banner.
_NOTICE = ("Illustrative monitoring by ELN 2022 response criteria (docs/clinical_rules.md §5); every call lists "
           "the criteria and values it used.")


def patient_html(timeline: Timeline, result: PatientResult, png: bytes | None, prov: dict[str, Any]) -> str:
    """The patient's self-contained HTML page (figure embedded as base64, no external resources).

    The body (status, open alerts, figure, calls with their criteria, events, MRD kinetics, data
    warnings) is this module's; the frame (banner, styles, provenance footer) is
    :func:`hemotwin.io.report.html_page`.

    Parameters
    ----------
    timeline
        The patient's timeline.
    result
        Its assessment.
    png
        The timeline figure (:func:`timeline_figure`), or ``None`` for a page without it.
    prov
        The provenance record shown in the footer.

    Returns
    -------
    str
        The HTML document.
    """
    rows = []
    for c in result.calls:
        crit = "; ".join(f"{'✔' if k.met else '✘' if k.met is False else '?'} {k.test} [{k.value}]"
                         for k in c.criteria)
        col = "#{:02x}{:02x}{:02x}".format(*CATEGORY_COLOURS.get(c.category, (220, 220, 220)))
        rows.append(f"<tr><td>{c.date}</td><td>{esc(c.sample)}</td><td style='background:{col}'>{esc(c.label)}"
                    f"</td><td>{esc(c.status)}</td><td class=s>{esc(crit)}</td></tr>")
    ev = []
    for n, e in enumerate(result.events, start=1):
        col = "#{:02x}{:02x}{:02x}".format(*SEVERITY_COLOURS[e.severity])
        ev.append(f"<tr><td>{n}</td><td>{e.date}</td><td style='color:{col}'><b>{esc(e.severity)}</b></td>"
                  f"<td>{esc(e.kind)}</td><td>{esc(e.message)}</td><td class=s>{esc('; '.join(e.evidence))}</td>"
                  f"<td class=s>{esc(e.rule)}</td></tr>")
    kin = []
    for k in result.kinetics:
        dbl = f"{k.doubling_days:.1f}" if k.doubling_days else "-"
        ci = (f"{k.doubling_days_ci[0]:.1f} to {k.doubling_days_ci[1]:.1f}" if k.doubling_days_ci and
              k.doubling_days_ci[0] and k.doubling_days_ci[1] else "-" if k.doubling_days_ci is None else "unbounded")
        proj = "already above" if k.already_above else (k.projected_date.isoformat() if k.projected_date else "-")
        pci = (f"{k.projected_date_ci[0] or '?'} to {k.projected_date_ci[1] or 'unbounded'}"
               if k.projected_date_ci else "-")
        kin.append(f"<tr><td>{esc(k.method)} {esc(k.marker)} ({esc(k.tissue)})</td><td>{k.n_points}</td>"
                   f"<td>{dbl}</td><td>{ci}</td><td>{k.threshold_pct:g} %</td><td>{proj}</td><td>{pci}</td>"
                   f"<td class=s>{esc('; '.join(k.flags))}</td></tr>")
    legend = " ".join(f"<span style='background:#{'{:02x}{:02x}{:02x}'.format(*CATEGORY_COLOURS[cats[0]])};"
                      f"padding:0 6px'>{esc(group)}</span>" for group, cats in RESPONSE_GROUPS.items())
    opened = "".join(f"<li><b>{esc(e.severity)}</b> {e.date}: {esc(e.message)}</li>" for e in result.open_alerts)
    warn = "".join(f"<li>{esc(w)}</li>" for w in result.warnings)
    img = f"<img alt='timeline figure' src='{data_uri(png)}'>" if png else ""
    body = f"""<p><b>Current status:</b> {esc(result.current_status)}<br>
<b>Last MRD:</b> {esc(result.last_mrd or "none")}</p>
<h2>Open alerts</h2><ul>{opened or "<li>none</li>"}</ul>
{img}
<h2>Calls by timepoint</h2>
<p class=s>{legend}</p>
{table(("date", "sample", "call", "status", "criteria (✔ met, ✘ not met, ? missing) [value]"), rows)}
<h2>Events</h2>
{table(("#", "date", "severity", "kind", "message", "evidence", "rule"), ev)}
<h2>MRD kinetics (rising segments)</h2>
{table(("series", "points", "doubling time (d)", "95 % interval (d)", "threshold", "projected crossing", "interval",
        "flags"), kin, empty="no rising MRD")}
<h2>Data warnings</h2><ul>{warn or "<li>none</li>"}</ul>
"""
    return html_page(f"hemotwin monitor: {timeline.patient}", body,
                     heading=f"{timeline.patient}: {timeline.diagnosis.disease}", notice=_NOTICE, provenance=prov,
                     extra_css=_CSS)


def patient_document(timeline: Timeline, result: PatientResult, prov: dict[str, Any]) -> dict[str, Any]:
    """The content of ``timeline.json``: research-use notice, provenance, the timeline and the result."""
    return {"research_use_only": RESEARCH_USE, "provenance": prov,
            "timeline": timeline.model_dump(mode="json", by_alias=True), "result": result_to_dict(result)}


def write_patient_outputs(timeline: Timeline, result: PatientResult, out_dir: Path, prov: dict[str, Any], *,
                          figure: bool = True) -> dict[str, str]:
    """Write ``timeline.png``, ``timeline.json`` and ``report.html`` into ``out_dir`` (which must exist)."""
    out: dict[str, str] = {}
    png = timeline_figure(timeline, result) if figure else None
    if png is not None:
        (out_dir / "timeline.png").write_bytes(png)
        out["figure"] = str(out_dir / "timeline.png")
    doc = patient_document(timeline, result, prov)
    (out_dir / "timeline.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    out["json"] = str(out_dir / "timeline.json")
    (out_dir / "report.html").write_text(patient_html(timeline, result, png, prov), encoding="utf-8")
    out["html"] = str(out_dir / "report.html")
    return out
