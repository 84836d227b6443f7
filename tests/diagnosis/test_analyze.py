"""The analysis engine and `hemotwin analyze`: real samples, bad input, tiling, the report schema."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from hemotwin.cli import app
from hemotwin.diagnosis.analyze import REPORT_SCHEMA_VERSION, AnalysisConfig, AnalysisEngine, analyze
from hemotwin.diagnosis.sample import open_sample
from hemotwin.diagnosis.virtual import SampleConfig, render_sample
from hemotwin.errors import InputError
from hemotwin.io.images import read_image, write_png

runner = CliRunner()
DOCS = Path(__file__).resolve().parents[2] / "docs" / "report_schema.md"


def _flat(res) -> str:
    return "".join(res.output.split())


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> Path:
    """An AML sample of 40 white cells under the 20x scanner (3 fields of 0.5 µm/px)."""
    out = tmp_path_factory.mktemp("aml") / "s"
    render_sample(SampleConfig(case="aml", cells=40, profile="wsi-20x", seed=11), out)
    return out


@pytest.fixture(scope="module")
def one_field(sample, tmp_path_factory) -> Path:
    """A folder holding the sample's first field only (quick runs)."""
    out = tmp_path_factory.mktemp("one")
    shutil.copy(sorted((sample / "fields").glob("*.png"))[0], out / "field.png")
    return out


@pytest.fixture(scope="module")
def engine() -> AnalysisEngine:
    return AnalysisEngine(AnalysisConfig(), num_threads=1)


@pytest.fixture(scope="module")
def result(engine, sample) -> dict:
    return engine.run(sample)


def test_counts_are_consistent_and_every_cell_is_accounted_for(result, sample):
    truth = json.loads((sample / "truth.json").read_text())
    c = result["counts"]
    assert c["n_classified"] == c["n_counted"] + c["n_referred"] == len(result["cells"])
    # Under the evidence rule the review list holds, besides the referred cells, the counted
    # rare-class calls below the evidence threshold (and confident calls behind a flag with too few).
    assert len(result["review"]) == c["n_review"] >= c["n_referred"] + c["n_unsure"]
    assert sum(r["kind"] == "below_confidence" for r in result["review"]) == c["n_referred"]
    assert sum(r["kind"] == "rare_unconfirmed" for r in result["review"]) == c["n_unsure"]
    # The twin places whole white cells inside the fields and detection finds nearly all of them.
    assert abs(c["n_classified"] + c["n_border_excluded"] - truth["cells"]) <= 3
    rows = result["differential"]["rows"]
    assert sum(r["count"] for r in rows) == c["n_counted"]
    assert all(r["confidence"] < 0.5 for r in result["review"] if r["kind"] == "below_confidence")
    assert all(0.5 <= r["confidence"] < 0.9 for r in result["review"] if r["kind"] == "rare_unconfirmed")
    assert result["sample"]["n_fields_analysed"] == len(truth["fields"])
    assert result["sample"]["pixel_size_sources"] == {"metadata (PNG pHYs)": len(truth["fields"])} or all(
        s.startswith("metadata") for s in result["sample"]["pixel_size_sources"])


REGENERATE = ("shipped chain calibrations do not match the shipped model: regenerate them with "
              "`hemotwin calibrate-chain --profile P --out src/hemotwin/diagnosis/data/calibration_P.json --overwrite` "
              "for P in analyzer-100x, wsi-40x, wsi-20x, phone-40x (about 2 min each)")


def test_shipped_calibrations_match_the_shipped_model(engine):
    from hemotwin.diagnosis.calibration import shipped_calibrations

    cals = shipped_calibrations()
    assert {c.profile for c in cals} == {"analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x"}
    assert all(c.model_sha256 == engine.classifier.sha256 for c in cals), REGENERATE


def test_calibration_file_option(tmp_path, engine, one_field):
    from hemotwin.diagnosis.calibration import calibrate_chain

    cal = calibrate_chain("wsi-20x", cells_per_class=2, seed=5)
    assert sum(cal.detected) + sum(cal.missed) == 30
    path = tmp_path / "cal.json"
    path.write_text(cal.model_dump_json())
    res = AnalysisEngine(AnalysisConfig(calibration=str(path), thumbnails=False), num_threads=1).run(one_field)
    assert res["corrected"]["calibration"]["cells_per_class"] == 2
    bad = cal.model_copy(update={"model_sha256": "0" * 64})
    path.write_text(bad.model_dump_json())
    with pytest.raises(InputError, match="calibration measured with the model in use"):
        AnalysisEngine(AnalysisConfig(calibration=str(path)), num_threads=1).run(one_field)


def test_field_cell_crops_are_detections_with_their_true_labels():
    from hemotwin.diagnosis.calibration import field_cell_crops

    labels = ["LYT", "NGS", "MON", "EOS", "MYO", "BAS"]
    out = field_cell_crops("wsi-20x", labels, seed=11, size_um=28.0, randomize=0.3)
    n = len(out["crops"])
    # Detection recall on twin fields is >= 0.98 per preset (docs/detection.md); a cell cut by the
    # field edge is left out, so allow one of six to be lost, never an invented label.
    assert n + len(out["missed"]) >= len(labels) - 1 and n >= len(labels) - 1
    # Each true cell is cut at most once, with its own label (false detections are left out).
    from collections import Counter

    assert not Counter(out["labels"]) - (Counter(labels) - Counter(out["missed"]))
    for crop, um in zip(out["crops"], out["um_per_px"], strict=True):
        # 28 µm at the (randomised) field pixel size, uint8 RGB, not blank.
        assert crop.shape == (round(28.0 / um), round(28.0 / um), 3) and crop.dtype == np.uint8
        assert crop.std() > 5
    # The same seed gives the same crops (the fields are seeded).
    again = field_cell_crops("wsi-20x", labels, seed=11, size_um=28.0, randomize=0.3)
    assert again["labels"] == out["labels"] and all(np.array_equal(a, b) for a, b in
                                                      zip(again["crops"], out["crops"], strict=True))


def test_corrected_interval_is_reported_with_the_matching_calibration(result):
    if result["corrected"] is None:
        pytest.skip(REGENERATE)
    assert result["corrected"]["calibration"]["profile"] == "wsi-20x"
    prim = result["blast_percent"]["primary"]
    assert prim["method"] == "misclassification-corrected"
    # AML case: 45 % blasts. The corrected interval is meant to cover it (seeded: deterministic).
    assert prim["lo"] <= 45.0 <= prim["hi"]
    assert result["blast_percent"]["plain"]["method"] == "clopper-pearson"


def test_report_files_and_schema(tmp_path, sample):
    res = analyze(sample, tmp_path / "r", config=AnalysisConfig(calibration="none"))
    data = json.loads(Path(res["json"]).read_text())
    assert data["schema_version"] == REPORT_SCHEMA_VERSION
    assert data["corrected"] is None and "plain" in data["calibration_note"]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOCS.read_text(), flags=re.M))
    assert set(data) <= documented, set(data) - documented  # every top-level key is documented
    html = Path(res["html"]).read_text()
    assert "For research use only" in html and "data:image/jpeg;base64," in html
    # A thumbnail per cell, and the same cell at the field's own resolution behind it (hover or click).
    assert html.count("<img class=t ") == html.count("class=zoom>") == data["counts"]["n_classified"]
    assert html.count("data:image/jpeg;base64,") == 2 * data["counts"]["n_classified"]
    assert "http://" not in html and "https://" not in html  # self-contained
    assert data["provenance"]["command"] == "analyze" and data["provenance"]["inputs"]["model_sha256"]
    with pytest.raises(Exception, match="overwrite"):
        analyze(sample, tmp_path / "r")


def _bad_folder(root: Path, good: Path) -> Path:
    """One good field at 0.5 µm/px, the same field at 0.25 µm/px (upsampled), a field without white
    cells, a corrupt file, a blank image and a non-smear picture."""
    root.mkdir()
    shutil.copy(good, root / "a_good.png")
    rgb, _ = read_image(good)
    big = np.repeat(np.repeat(rgb, 2, axis=0), 2, axis=1)
    write_png(root / "b_good_finer.png", big, um_per_px=0.25)
    # Glass and red cells only: cut the white cells' area out by keeping a WBC-free corner tile.
    render_sample(SampleConfig(case="normal", cells=1, profile="wsi-20x", seed=3), root.parent / "tmp_one")
    one, _ = read_image(next((root.parent / "tmp_one" / "fields").glob("*.png")))
    truth = json.loads((root.parent / "tmp_one" / "truth.json").read_text())
    cy, cx = truth["fields"][0]["cells"][0]["center_px"]
    half = one.shape[0] // 2
    r0 = 0 if cy > half else half
    c0 = 0 if cx > half else half
    write_png(root / "c_no_wbc.png", one[r0:r0 + half - 20, c0:c0 + half - 20], um_per_px=0.5)
    (root / "d_corrupt.png").write_bytes((root / "a_good.png").read_bytes()[:400])
    write_png(root / "e_blank.png", np.full((200, 200, 3), 236, np.uint8), um_per_px=0.5)
    yy, xx = np.mgrid[0:300, 0:300]
    photo = np.stack([(yy * 0.8) % 255, (xx * 0.6 + 40) % 255, np.full_like(yy, 90)], -1).astype(np.uint8)
    write_png(root / "f_photo.png", photo, um_per_px=0.5)
    (root / "notes.txt").write_text("not an image")
    return root


def test_partially_bad_sample_still_gives_a_report(tmp_path, sample, engine):
    good = sorted((sample / "fields").glob("*.png"))[0]
    folder = _bad_folder(tmp_path / "bad", good)
    res = engine.run(folder)
    status = {f["name"]: f["status"] for f in res["sample"]["fields"]}
    reasons = {s["field"]: s["reason"] for s in res["sample"]["skipped"]}
    assert status["a_good.png"] == status["b_good_finer.png"] == "analysed"
    assert status["c_no_wbc.png"] == "no_wbc"
    assert "unreadable" in reasons["d_corrupt.png"]
    assert "blank" in reasons["e_blank.png"]
    assert "not a smear" in reasons["f_photo.png"]
    assert "notes.txt" not in status
    assert any("different pixel sizes" in n for n in res["sample"]["notes"])
    assert res["sample"]["pixel_sizes"] == {"0.25": 1, "0.5": 4} or set(res["sample"]["pixel_sizes"]) >= {"0.25", "0.5"}
    # The same cells at two pixel sizes: each field processed at its own scale finds the same cells.
    n = {f["name"]: f["n_classified"] for f in res["sample"]["fields"]}
    assert abs(n["a_good.png"] - n["b_good_finer.png"]) <= 1
    assert res["counts"]["n_classified"] > 0


def test_cli_bad_inputs(tmp_path):
    (tmp_path / "empty").mkdir()
    res = runner.invoke(app, ["analyze", str(tmp_path / "empty"), "--out", str(tmp_path / "o1")])
    assert res.exit_code == 2 and "folderholdingfieldimages" in _flat(res) and "empty" in _flat(res)
    res = runner.invoke(app, ["analyze", str(tmp_path / "missing"), "--out", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "missing" in _flat(res) and "nosuchfileorfolder" in _flat(res)
    res = runner.invoke(app, ["analyze", str(tmp_path / "empty"), "--out", str(tmp_path / "o3"),
                              "--min-confidence", "2"])
    assert res.exit_code == 2 and "--min-confidence" in _flat(res)
    # Nothing usable: a report is still written and says why; the command lists the fields and exits 2.
    allbad = tmp_path / "allbad"
    allbad.mkdir()
    write_png(allbad / "blank.png", np.full((200, 200, 3), 236, np.uint8), um_per_px=0.5)
    (allbad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    res = runner.invoke(app, ["analyze", str(allbad), "--out", str(tmp_path / "o4"), "-w", "1"])
    assert res.exit_code == 2, res.output
    flat = _flat(res)
    assert "nofieldofthesamplecouldbeanalysed" in flat and "skippedblank.png" in flat and "broken.jpg" in flat
    data = json.loads((tmp_path / "o4" / "report.json").read_text())
    assert data["counts"]["n_classified"] == 0 and len(data["sample"]["skipped"]) == 2
    assert data["summary"].startswith("No white cell")
    # Nothing counted: no flags at all (not nine "indeterminate" ones), and a warning that says why.
    assert data["flags"] == [] and data["flags_assessable"] is False
    assert [w["id"] for w in data["warnings"]] == ["no_cells_counted"] and "indeterminate" not in flat


def test_cli_failed_runs_leave_no_output_folder(tmp_path, one_field):
    # Each of these fails before any field is read (exit 2, the option named) and leaves nothing behind.
    cases = [
        (["analyze", str(tmp_path / "missing"), "--out", str(tmp_path / "a" / "b")], "nosuchfileorfolder"),
        (["analyze", str(one_field), "--out", str(tmp_path / "c"), "--calibration", str(tmp_path / "no.json")],
         "--calibration"),
        (["analyze", str(one_field), "--out", str(tmp_path / "d"), "--profile", "wsi-99x"], "--profile"),
        (["analyze", str(one_field), "--out", str(tmp_path / "e"), "--specimen", "urine"], "--specimen"),
        (["analyze", str(one_field), "--out", str(tmp_path / "f"), "--um-per-px", "50"], "--um-per-px"),
    ]
    for args, named in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 2 and named in _flat(res), (args, res.output)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    # An --out that cannot be a folder (a file is in the way) is refused before the work, naming --out.
    (tmp_path / "file").write_text("x")
    res = runner.invoke(app, ["analyze", str(one_field), "--out", str(tmp_path / "file" / "r")])
    assert res.exit_code == 2 and "--out" in _flat(res), res.output


def test_cli_skipped_fields_exit_3_and_are_listed(tmp_path, one_field):
    folder = tmp_path / "s"
    shutil.copytree(one_field, folder)
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    res = runner.invoke(app, ["analyze", str(folder), "--out", str(tmp_path / "o"), "-w", "1"])
    assert res.exit_code == 3, res.output
    flat = _flat(res)
    assert "skippedbroken.jpg" in flat and "1item(s)skipped" in flat and "report.json" in flat
    data = json.loads((tmp_path / "o" / "report.json").read_text())
    assert [s["field"] for s in data["sample"]["skipped"]] == ["broken.jpg"] and data["counts"]["n_counted"] > 0


def test_cli_analyze_summary(tmp_path, one_field):
    res = runner.invoke(app, ["analyze", str(one_field), "--out", str(tmp_path / "o"), "-w", "1", "--json"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout[res.stdout.index("{"):res.stdout.rindex("}") + 1])
    assert set(data["flags"]) >= {"blasts_ge_20", "apl_pattern", "cll_pattern"}
    assert Path(data["html"]).exists()
    # One field of a 40-cell sample: under the 100 cells of a conventional differential, said so.
    n = data["counts"]["n_counted"]
    assert 0 < n < 100 and [w["id"] for w in data["warnings"]] == ["few_cells_counted"]
    assert f"Only {n} leukocyte(s) counted" in data["warnings"][0]["message"]
    assert "docs/clinical_rules.md §2" in data["warnings"][0]["message"]
    res = runner.invoke(app, ["analyze", str(one_field), "--out", str(tmp_path / "p"), "-w", "1"])
    assert res.exit_code == 0, res.output
    flat = _flat(res)
    assert "warning:Only" in flat and "docs/clinical_rules.md§2" in flat
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    shown = [f for f in report["flags"] if f["state"] != "negative"]
    assert shown
    for f in shown:  # every citation in full (wrapped between words, never cut)
        assert "".join(f["source"].split()) in flat, f["source"]
    html = (tmp_path / "p" / "report.html").read_text()
    assert "class=warn><b>Warning.</b> Only" in html


def test_no_counted_cell_gives_no_flags_and_no_nan(tmp_path, one_field):
    # Every cell below a review threshold of 1: classified, referred, none counted.
    res = analyze(one_field, tmp_path / "r", config=AnalysisConfig(min_confidence=1.0, calibration="none"))
    r = res["result"]
    assert r["counts"]["n_classified"] > 0 and r["counts"]["n_counted"] == 0
    assert r["flags"] == [] and r["summary"].startswith("No leukocyte counted")
    assert "not assessable" in r["counting_advice"]["statement"]
    for path in (res["json"], res["html"]):
        assert not re.search(r"\bnan\b", Path(path).read_text(), flags=re.I), path
    assert "Flags not assessable" in Path(res["html"]).read_text()
    res = runner.invoke(app, ["analyze", str(one_field), "--out", str(tmp_path / "c"), "-w", "1",
                              "--min-confidence", "1"])
    assert res.exit_code == 0 and "nan" not in res.output.lower() and "notassessable" in _flat(res), res.output


def test_pixel_size_from_option_or_red_cells(tmp_path, sample):
    from PIL import Image

    (tmp_path / "f").mkdir()
    for k, path in enumerate(sorted((sample / "fields").glob("*.png"))):
        rgb, _ = read_image(path)
        Image.fromarray(rgb).save(tmp_path / "f" / f"field{k}.png")  # no pHYs: no pixel size in the file
    src = open_sample(tmp_path / "f")
    f = src.read(src.fields[0])
    # The three fields' red cells are pooled into one estimate that states its quality.
    assert f.um_source.startswith("red cells (") and "red cells in 3 images, robust CV" in f.um_source
    assert f.um_per_px == pytest.approx(0.5, rel=0.06)  # wsi-20x twin fields: measured +2 % (7.6 µm cells)
    src = open_sample(tmp_path / "f", um_per_px=0.5)
    assert src.read(src.fields[0]).um_source == "option"
    # The first field alone (crowded with white cells) holds too few measurable red cells: refused, naming
    # the file and asking for its pixel size, rather than a guess from five cells.
    (tmp_path / "one").mkdir()
    shutil.copy(tmp_path / "f" / "field0.png", tmp_path / "one" / "field0.png")
    src = open_sample(tmp_path / "one")
    with pytest.raises(InputError, match=r"field0\.png: got 'no pixel size'") as err:
        src.read(src.fields[0])
    assert "give it (um_per_px)" in str(err.value) and "measurable red cells" in str(err.value)
    with pytest.raises(InputError):
        open_sample(tmp_path / "f", um_per_px=50.0)


def test_large_tiff_is_tiled_without_counting_a_cell_twice(tmp_path, sample, engine):
    fields = [read_image(p)[0] for p in sorted((sample / "fields").glob("*.png"))]
    side = min(f.shape[0] for f in fields)
    tiles = [f[:side, :side] for f in (fields * 2)[:4]]
    mosaic = np.concatenate([np.concatenate(tiles[:2], 1), np.concatenate(tiles[2:], 1)], 0)
    path = tmp_path / "scan.tif"
    # 0.5 µm/px = 20,000 pixels per cm (resolution unit 3 = centimetre).
    tifffile.imwrite(path, mosaic, photometric="rgb", tile=(128, 128), resolution=(20000, 20000),
                     resolutionunit=3)
    whole = AnalysisEngine(AnalysisConfig(tile=False), num_threads=1).run(path)
    tiled = AnalysisEngine(AnalysisConfig(tile=True), num_threads=1).run(path)
    assert tiled["sample"]["n_fields"] > 1 and any("tiled on the fly" in n for n in tiled["sample"]["notes"])
    assert whole["sample"]["n_fields"] == 1
    # Each cell is counted in exactly one tile: the totals agree with the untiled analysis.
    assert abs(tiled["counts"]["n_classified"] - whole["counts"]["n_classified"]) <= 1
    cents = sorted(tuple(c["centroid"]) for c in tiled["cells"])
    assert len(cents) == len(set(cents))


def test_a_sample_the_classifier_cannot_read_gets_no_positive_flag(sample, monkeypatch):
    """More referred cells than MAX_REFERRED_SHARE: the report says so first and calls no flag positive."""
    import hemotwin.diagnosis.analyze as analyze_module

    config = AnalysisConfig(min_confidence=0.5)
    plain = AnalysisEngine(config, num_threads=1).run(sample)
    # The twin AML sample under a validated preset is read: blasts >= 20 % is positive, nothing referred much.
    assert not plain["classifier_unsure"]
    assert any(f["state"] == "positive" for f in plain["flags"])
    assert not any(w["id"] == "classifier_unsure" for w in plain["warnings"])
    # The same cells with the share set to 0 (any referred cell is too many) stand for a sample the
    # classifier cannot read: the counts are the same, so only the rule changes the flags.
    assert plain["counts"]["n_referred"] >= 1
    monkeypatch.setattr(analyze_module, "MAX_REFERRED_SHARE", 0.0)
    unsure = AnalysisEngine(config, num_threads=1).run(sample)
    assert unsure["classifier_unsure"]
    assert unsure["counts"] == plain["counts"]
    assert not any(f["state"] == "positive" for f in unsure["flags"])
    was_positive = {f["id"] for f in plain["flags"] if f["state"] == "positive"}
    for f in unsure["flags"]:
        if f["id"] in was_positive:
            assert f["state"] == "indeterminate" and "Not called positive" in f["statement"]
    assert unsure["warnings"][0]["id"] == "classifier_unsure"
    assert unsure["summary"].startswith("The classifier is unsure on this sample")
