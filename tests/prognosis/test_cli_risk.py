"""``hemotwin risk`` and ``hemotwin cohort score`` through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from hemotwin.cli import app

runner = CliRunner()
PATIENT = {"id": "P-001", "disease": "MDS", "karyotype": "46,XY,del(5)(q13q33)[18]/46,XY[2]",
           "mutations": [{"gene": "SF3B1", "vaf": 0.38, "effect": "non_synonymous_codon",
                          "protein_change": "p.K700E"}],
           "sequenced_genes": "all", "bm_blast_pct": 3, "hb_g_dl": 9.4, "plt_1e9_per_l": 310, "anc_1e9_per_l": 2.1}


def _flat(res) -> str:
    return "".join(res.output.split())


def test_help():
    for cmd in (["risk"], ["cohort", "score"]):
        res = runner.invoke(app, [*cmd, "--help"])
        assert res.exit_code == 0 and "Usage" in _flat(res)


def test_risk_human_and_json(tmp_path: Path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(PATIENT))
    res = runner.invoke(app, ["risk", str(f)])
    assert res.exit_code == 0, res.output
    flat = _flat(res)
    for text in ("ELN2022:Adverse", "IPSS-R:3Low", "IPSS-M:-0.52Low", "SF3B1_5q=1", "Forresearchuseonly"):
        assert text in flat
    res = runner.invoke(app, ["risk", str(f), "--json"])
    data = json.loads(res.output)
    assert data["ipssm"]["score"] == -0.52 and data["eln2022"]["category"] == "Adverse"


def test_risk_bad_units_exit_2(tmp_path: Path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps({**PATIENT, "plt_1e9_per_l": 310000}))
    res = runner.invoke(app, ["risk", str(f)])
    assert res.exit_code == 2 and "/µL" in _flat(res)


def test_risk_is_fast_and_imports_no_torch_or_pandas(tmp_path: Path):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(PATIENT))
    code = (f"import sys; from hemotwin.cli import app; sys.argv=['hemotwin','risk',{str(f)!r}]\n"
            "try:\n    app()\nexcept SystemExit:\n    pass\n"
            "print('MODULES', 'torch' in sys.modules, 'pandas' in sys.modules)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    wall = time.perf_counter() - t0
    assert "MODULES False False" in out.stdout, out.stdout + out.stderr
    assert wall < 3.0  # < 1 s on an idle machine (docs/prognosis.md); slack for a loaded CI runner


def test_cohort_score_writes_csv_and_provenance(tmp_path: Path):
    c = tmp_path / "clinical.csv"
    c.write_text("ID,CENTER,BM_BLAST,WBC,ANC,MONOCYTES,HB,PLT,CYTOGENETICS\n"
                 "P1,A,3,3,2.1,0.3,9.4,310,\"46,XY,del(5)(q13q33)[20]\"\nP2,A,45,20,0.5,1,8.1,40,\"46,XX[20]\"\n"
                 "P3,B,12,2,0.2,0.1,7.5,23,\n")
    m = tmp_path / "molecular.csv"
    m.write_text("ID,GENE,PROTEIN_CHANGE,EFFECT,VAF\nP1,SF3B1,p.K700E,non_synonymous_codon,0.38\n"
                 "P2,NPM1,p.W288fs,frameshift_variant,0.4\nP2,FLT3,,ITD,0.2\nP9,TP53,p.R248Q,x,0.5\n")
    panel = tmp_path / "genes.txt"
    panel.write_text("all\n")
    out = tmp_path / "scores.csv"
    args = ["cohort", "score", "--clinical", str(c), "--molecular", str(m), "--panel", str(panel), "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    df = pd.read_csv(out, keep_default_na=False)
    assert list(df["ELN2022"]) == ["Adverse", "Intermediate", "Intermediate"]
    prov = json.loads((tmp_path / "scores.provenance.json").read_text())
    assert prov["command"] == "cohort score" and set(prov["inputs"]) == {"clinical", "molecular", "panel"}
    assert any("P9" in w for w in prov["table_warnings"])
    flat = _flat(res)
    assert "3patientsscored" in flat and "ELN2022:" in flat and "warning" in flat
    res = runner.invoke(app, args)
    assert res.exit_code == 2 and "--overwrite" in _flat(res)
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_cohort_score_bad_table_exit_2(tmp_path: Path):
    c = tmp_path / "clinical.csv"
    c.write_text("ID,BM_BLAST,ANC,HB,PLT,CYTOGENETICS\nP1,3,2,95,310,\n")
    res = runner.invoke(app, ["cohort", "score", "--clinical", str(c), "--out", str(tmp_path / "s.csv")])
    assert res.exit_code == 2 and "g/L" in _flat(res) and "line2" in _flat(res)
