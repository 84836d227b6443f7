"""Virtual patients: the cases file, the rendered sample and its truth, the `simulate sample` command."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hemotwin.cli import app
from hemotwin.diagnosis.cases import get_case, list_cases, load_cases
from hemotwin.diagnosis.differential import LEUKOCYTE_CODES
from hemotwin.diagnosis.flags import RULES
from hemotwin.diagnosis.virtual import SampleConfig, render_sample, sample_plan
from hemotwin.errors import InputError
from hemotwin.io.images import read_image

runner = CliRunner()


def _flat(res) -> str:
    return "".join(res.output.split())


def test_cases_are_valid_and_cite_a_source():
    cases = load_cases()
    assert len(cases) >= 5
    assert {"normal", "aml", "apl", "cll", "cml-like"} <= set(cases)
    rule_ids = {r.id for r in RULES}
    for c in cases.values():
        assert sum(c.differential.values()) == pytest.approx(1.0)
        assert len(c.source) > 40
        assert set(c.expected_flags) <= rule_ids, c.name
    assert get_case("aml").true_blast_percent == pytest.approx(45.0)
    # mds-ib2: 12 blasts per 96 leukocytes (EBO outside the denominator).
    assert get_case("mds-ib2").true_blast_percent == pytest.approx(12 / 0.96)
    with pytest.raises(InputError, match="normal"):
        get_case("leukaemia")


def test_plan_enriches_white_cells_and_draws_labels_from_the_case():
    plan = sample_plan(SampleConfig(case="cll", cells=2000, profile="wsi-20x", seed=5))
    labels = [lab for f in plan["fields"] for lab in f]
    assert len(labels) == 2000
    assert len(plan["fields"]) == -(-2000 // plan["per_field"])
    # Multinomial draw: LYT share within 4 binomial SDs of 0.70 (SD = sqrt(0.7*0.3/2000) = 1.0 %).
    assert abs(Counter(labels)["LYT"] / 2000 - 0.70) < 0.041
    same = sample_plan(SampleConfig(case="cll", cells=2000, profile="wsi-20x", seed=5))
    assert same["fields"] == plan["fields"]  # same seed, same sample


def test_rendered_sample_matches_its_truth(tmp_path):
    s = render_sample(SampleConfig(case="amol", cells=40, profile="wsi-20x", seed=2), tmp_path / "s")
    truth = json.loads((tmp_path / "s" / "truth.json").read_text())
    assert truth == json.loads(json.dumps(s["truth"]))
    assert truth["cells"] == 40 and sum(truth["realised_counts"].values()) == 40
    assert truth["true_blast_percent"] == pytest.approx(43.0)
    leuk = sum(v for k, v in truth["realised_counts"].items() if k in LEUKOCYTE_CODES)
    blasts = truth["realised_counts"].get("MYO", 0) + truth["realised_counts"].get("MOB", 0)
    assert truth["realised_blast_percent"] == pytest.approx(100 * blasts / leuk, abs=1e-3)
    for f in truth["fields"]:
        _rgb, info = read_image(tmp_path / "s" / f["file"])
        assert info.um_per_px == pytest.approx(0.5, rel=1e-4)  # the pixel size travels in the PNG
        ids = np.unique(np.asarray(Image.open(tmp_path / "s" / f["mask"])))
        assert {c["id"] for c in f["cells"]} <= set(ids.tolist())  # every white cell is in the mask
    assert Counter(c["label"] for f in truth["fields"] for c in f["cells"]) == Counter(truth["realised_counts"])
    prov = json.loads((tmp_path / "s" / "provenance.json").read_text())
    assert prov["config"]["case"] == "amol" and "research_use_only" in prov


def test_simulate_sample_command(tmp_path):
    res = runner.invoke(app, ["simulate", "sample", "--list"])
    assert res.exit_code == 0 and all(name in _flat(res) for name in list_cases())
    res = runner.invoke(app, ["simulate", "sample", "--case", "nope", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "--case" in _flat(res)
    res = runner.invoke(app, ["simulate", "sample", "--out", str(tmp_path / "x"), "--cells", "0"])
    assert res.exit_code == 2 and "--cells" in _flat(res)
    # One name per option: the short -n of --cells (and of calibrate-chain's --per-class) is gone.
    res = runner.invoke(app, ["simulate", "sample", "--out", str(tmp_path / "x"), "-n", "12"])
    assert res.exit_code == 2 and "No such option" in res.output and not (tmp_path / "x").exists()
    res = runner.invoke(app, ["calibrate-chain", "--out", str(tmp_path / "c.json"), "-n", "2"])
    assert res.exit_code == 2 and "No such option" in res.output and not (tmp_path / "c.json").exists()
    # A bad preset is refused before the model loads, and the folder made for the file goes again.
    res = runner.invoke(app, ["calibrate-chain", "--out", str(tmp_path / "new" / "c.json"), "--profile", "wsi-99x"])
    assert res.exit_code == 2 and "--profile" in _flat(res) and not (tmp_path / "new").exists(), res.output
    res = runner.invoke(app, ["simulate", "sample", "--case", "normal", "--cells", "12", "--profile", "wsi-20x",
                              "--out", str(tmp_path / "ok"), "-w", "1"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ok" / "truth.json").exists()
    res = runner.invoke(app, ["simulate", "sample", "--case", "normal", "--cells", "12", "--profile", "wsi-20x",
                              "--out", str(tmp_path / "ok")])
    assert res.exit_code == 2 and "--overwrite" in _flat(res)
