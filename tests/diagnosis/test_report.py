"""Reports: strict JSON, a self-contained HTML page with gallery, review list, flags and provenance."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from hemotwin.diagnosis.analyze import AnalysisConfig, AnalysisEngine, CellResult, FieldResult
from hemotwin.diagnosis.classify import thumbnail
from hemotwin.diagnosis.report import json_ready, render_html, write_report
from hemotwin.diagnosis.sample import FieldSource, SampleSource
from hemotwin.io.report import RESEARCH_USE, esc


def _result(calls: list[tuple[str, float]], *, field_name: str = "f1.png") -> dict:
    """A report record built by the engine's own summary from given cells (no model needed)."""
    eng = AnalysisEngine.__new__(AnalysisEngine)
    eng.config = AnalysisConfig(calibration="auto")
    eng.classifier = SimpleNamespace(sha256="f" * 64, path=Path("model.hemo"), labels=["MYO", "NGS", "LYT"],
                                     um_per_px=0.225, input_size=112)
    crop = np.full((112, 112, 3), 200, np.uint8)
    cells = [CellResult(id=k + 1, field=field_name, bbox=(0, 0, 10, 10), centroid=(5.0, 5.0), call=c,
                        confidence=p, referred=p < 0.5, top=[(c, p)], detection_score=0.9, thumb=thumbnail(crop))
             for k, (c, p) in enumerate(calls)]
    fields = [FieldResult(name=field_name, status="analysed", um_per_px=0.1, um_source="metadata",
                          n_detected=len(cells), n_classified=len(cells)),
              FieldResult(name="broken.png", status="skipped", reason="unreadable: truncated data")]
    src = SampleSource(path=Path("/data/sample"), fields=[FieldSource(field_name, Path(field_name))])
    res = eng._summarise(src, fields, cells)
    res["_cells"] = cells
    res["timing"] = {"seconds": 1.0}
    res["provenance"] = {"command": "analyze", "research_use_only": RESEARCH_USE}
    return res


def test_json_ready_is_strict_json():
    data = json_ready({"a": float("nan"), "b": (1, float("inf")), "_private": 1, "c": np.float32(0.5),
                       "d": [Path("x")]})
    assert data == {"a": None, "b": [1, None], "c": 0.5, "d": ["x"]}
    json.dumps(data, allow_nan=False)


def test_report_files(tmp_path):
    res = _result([("MYO", 0.9)] * 30 + [("NGS", 0.8)] * 60 + [("LYT", 0.3)] * 10)
    paths = write_report(res, tmp_path)
    data = json.loads(paths["json"].read_text())
    assert "_cells" not in data and data["research_use_only"] == RESEARCH_USE
    assert data["counts"]["n_referred"] == 10 and len(data["review"]) == 10
    assert data["differential"]["blasts"]["percent"] == pytest.approx(100 * 30 / 90)
    assert data["corrected"] is None  # no calibration for an unknown model checksum
    assert "no chain calibration" in data["calibration_note"]
    blast = {f["id"]: f for f in data["flags"]}["blasts_ge_20"]
    assert blast["state"] == "positive" and "docs/clinical_rules.md §1" in blast["source"]
    html = paths["html"].read_text()
    assert html.count("data:image/jpeg;base64,") == 100  # every cell in the gallery
    assert html.count(RESEARCH_USE) >= 2  # top and bottom of the page (and in the provenance)
    for text in ("Review list (10 cells", "MYO – myeloblast: 30 cell(s)", "broken.png", "truncated data",
                 "Provenance", "Clopper–Pearson"):
        assert text in html, text
    assert "https://" not in html and "http://" not in html


def test_html_escapes_names_and_handles_missing_numbers():
    res = _result([("NGS", 0.9)] * 5, field_name="<script>alert(1)</script>.png")
    page = render_html(res)
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    # MYO count 0 -> percent 0; EBO per-100 rows exist; no "nan" leaks into the page.
    assert not re.search(r"\bnan\b", page, flags=re.I)


def test_empty_analysis_still_renders():
    res = _result([])
    assert res["summary"].startswith("No white cell")
    assert math.isnan(res["differential"]["blasts"]["percent"])
    # Nothing counted: no flags (not nine indeterminate ones), a warning, and no "nan" anywhere.
    assert res["flags"] == [] and res["flags_assessable"] is False
    assert [w["id"] for w in res["warnings"]] == ["no_cells_counted"]
    page = render_html(res)
    assert "No classified cells" in page and "No cell below the confidence threshold" in page
    flags_part = page[page.index("<h2>Flags"):page.index("<h2>Differential")]
    assert "Flags not assessable" in flags_part and "<td class='l indeterminate'>" not in flags_part
    assert "nan" not in res["summary"].lower() and not re.search(r"\bnan\b", page, flags=re.I)
    json.dumps(json_ready(res), allow_nan=False)


def test_small_count_is_warned_about_and_large_one_is_not():
    res = _result([("NGS", 0.9)] * 60 + [("LYT", 0.8)] * 39)
    assert [w["id"] for w in res["warnings"]] == ["few_cells_counted"]
    assert "Only 99 leukocyte(s) counted" in res["warnings"][0]["message"]
    assert "docs/clinical_rules.md §2" in res["warnings"][0]["message"]
    assert "class=warn><b>Warning.</b> Only 99" in render_html(res)
    assert _result([("NGS", 0.9)] * 60 + [("LYT", 0.8)] * 40)["warnings"] == []


def test_sources_are_shown_in_full():
    res = _result([("MYO", 0.95)] * 12 + [("NGS", 0.9)] * 100)
    page = render_html(res)
    for f in res["flags"]:
        assert f"Source: {esc(f['source'])}</span>" in page, f["id"]


def test_each_cell_can_be_seen_at_native_resolution():
    import io

    from PIL import Image

    from hemotwin.diagnosis.classify import NATIVE_VIEW_MAX_PX, native_view

    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (400, 400, 3), dtype=np.uint8)  # a 0.07 µm/px crop: scaled down to the cap
    small = np.full((53, 53, 3), 180, np.uint8)  # a 0.5 µm/px crop: kept as it is

    assert Image.open(io.BytesIO(native_view(big))).size == (NATIVE_VIEW_MAX_PX, NATIVE_VIEW_MAX_PX)
    assert Image.open(io.BytesIO(native_view(small))).size == (53, 53)
    res = _result([("NGS", 0.9)] * 2)
    for c, crop, um in zip(res["_cells"], (big, small), (0.0725, 0.5), strict=True):
        c.native, c.native_px, c.um_per_px = native_view(crop), max(crop.shape[:2]), um
    page = render_html(res)
    assert page.count("class=zoom>") == 2 and page.count("<img class=t ") == 2
    assert "400 px at 0.0725 µm/px" in page and "53 px at 0.5 µm/px" in page
    assert ".cell:hover .zoom" in page and "tabindex=0" in page  # shown on hover, or on click (focus)


def test_page_has_the_shared_frame():
    res = _result([("NGS", 0.9)] * 3)
    res["provenance"] = {"hemotwin_version": "1.2.3", "command": "analyze", "seeds": {"seed": 0}}
    page = render_html(res)
    assert page.count("<html") == 1 and page.count("<body>") == 1 and page.count("<footer>") == 1
    assert "<title>hemotwin smear analysis</title>" in page and "<h1>Smear analysis: sample</h1>" in page
    assert "reviewed by a qualified morphologist" in page
    footer = page[page.index("<footer>"):]
    assert "hemotwin 1.2.3" in footer and "&quot;seeds&quot;" in footer and RESEARCH_USE in footer
