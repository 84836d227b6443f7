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
    # P3 has no karyotype: adverse cytogenetics cannot be excluded, so its ELN group is undetermined.
    assert list(df["ELN2022"]) == ["Adverse", "Intermediate", "undetermined"]
    assert df.loc[2, "ELN2022_REASON"].endswith("decided by karyotype (not given)")
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


def _risk(tmp_path: Path, record: dict, *extra: str):
    f = tmp_path / "p.json"
    f.write_text(json.dumps(record))
    return runner.invoke(app, ["risk", str(f), *extra])


def _headline(output: str, name: str) -> str:
    """The headline of one score: its first line and the lines it wraps onto (rich wraps at the terminal width)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}:"))
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(" ")), len(lines))
    return " ".join(" ".join(lines[start:end]).split())


def test_risk_with_only_an_id_names_no_category(tmp_path: Path):
    res = _risk(tmp_path, {"id": "P1"})
    assert res.exit_code == 0, res.output
    ipssm = _headline(res.output, "IPSS-M")
    assert "Moderate Low" not in ipssm and ipssm.startswith("IPSS-M: undetermined")
    assert "Very Low to Very High" in ipssm and "decided by haemoglobin, marrow blasts, TP53" in ipssm
    for name in ("ELN 2022", "ELN 2024", "IPSS-R"):
        assert _headline(res.output, name).startswith(f"{name}: undetermined"), name
    assert "karyotype (not given)" in _headline(res.output, "IPSS-R")
    data = json.loads(_risk(tmp_path, {"id": "P1"}, "--json").output)
    for key in ("eln2022", "eln2024", "ipssr", "ipssm"):
        assert data[key]["category"] is None and data[key]["determined"] is False and data[key]["deciding_inputs"]
    assert data["ipssm"]["status"] == "undetermined" and data["ipssm"]["category_estimate"] == "Moderate Low"


def test_risk_with_an_unreadable_karyotype_says_so(tmp_path: Path):
    res = _risk(tmp_path, {**PATIENT, "karyotype": "garbage xx"})
    assert res.exit_code == 0, res.output
    for name in ("ELN 2022", "IPSS-R", "IPSS-M"):
        head = _headline(res.output, name)
        head = head.split(" [")[0]  # without the "[AML score]" tag of a score outside the disease given
        assert head.startswith(f"{name}: undetermined") and head.endswith("decided by karyotype (unreadable)"), head


def test_risk_apl_is_outside_eln(tmp_path: Path):
    res = _risk(tmp_path, {"id": "APL1", "disease": "AML", "karyotype": "46,XX,t(15;17)(q24;q21)[20]",
                           "sequenced_genes": "all", "wbc_1e9_per_l": 3, "plt_1e9_per_l": 25})
    assert res.exit_code == 0, res.output
    head = _headline(res.output, "ELN 2022")
    assert head.startswith("ELN 2022: not applicable") and "APL" in head and "Sanz" in head
    assert "Intermediate" not in head and "Sanz score: intermediate risk" in res.output
    data = json.loads(_risk(tmp_path, {"id": "APL1", "karyotype": "46,XX,t(15;17)(q24;q21)[20]"}, "--json").output)
    assert data["eln2022"]["status"] == "not applicable" and data["eln2022"]["category"] is None


def test_risk_patient_errors_in_our_words(tmp_path: Path):
    for record, text in (({"id": "x", "hb": 9}, "hb:got9;expectedonlytheknownfields:id,disease"),
                         ({"id": "x", "bm_blast_pct": 120}, "expectedanumber<=100"),
                         ({"id": "x", "sequenced_genes": 5}, 'alistofgenesymbols,or"all"')):
        res = _risk(tmp_path, record)
        assert res.exit_code == 2 and text in _flat(res), _flat(res)
        assert "Inputshould" not in _flat(res) and "Extrainputs" not in _flat(res)
    f = tmp_path / "broken.json"
    f.write_text('{"id": "x",\n  "hb_g_dl": }')
    res = runner.invoke(app, ["risk", str(f)])
    assert res.exit_code == 2 and "broken.json,line2" in _flat(res)


CLINICAL_HEADER = "ID,BM_BLAST,HB,PLT,ANC,CYTOGENETICS\n"


def _score(tmp_path: Path, name: str, text: str | bytes, *extra: str):
    c = tmp_path / name
    c.write_bytes(text if isinstance(text, bytes) else text.encode())
    return runner.invoke(app, ["cohort", "score", "--clinical", str(c), "--out", str(tmp_path / "out" / "s.csv"),
                               *extra])


def test_cohort_score_table_errors_in_our_words(tmp_path: Path):
    cases = [
        ("semi.csv", "ID;BM_BLAST;HB;PLT;ANC;CYTOGENETICS\nP1;3;9;100;1;46,XX[20]\n",
         "semi.csv,line1", "lookssemicolon-separated;usecommas(ora.tsvwithtabs)"),
        ("tabs.csv", "ID\tBM_BLAST\tHB\tPLT\tANC\tCYTOGENETICS\nP1\t3\t9\t100\t1\t46,XX[20]\n",
         "tabs.csv,line1", "lookstab-separated;nameit.tsv"),
        ("quote.csv", CLINICAL_HEADER + 'P1,3,9,100,1,"46,XX[20]\nP2,3,9,100,1,46,XX[20]\n',
         "quote.csv,line2", 'aclosingdoublequote(")'),
        ("fields.csv", CLINICAL_HEADER + "P1,3,9,100,1,46,XX[20]\n", "fields.csv,line2", "6fieldsliketheheader"),
        ("latin.csv", CLINICAL_HEADER.encode() + b"P1,3,9,100,1,46,XX\xe9[20]\n", "latin.csv,line2", "UTF-8text"),
    ]
    for name, text, where, expected in cases:
        res = _score(tmp_path, name, text)
        flat = _flat(res)
        assert res.exit_code == 2 and where in flat and expected in flat, flat
        assert "tokenizing" not in flat and "Cerror" not in flat
    assert not (tmp_path / "out").exists()  # nothing done, no folder left


def test_cohort_score_marks_undetermined_categories(tmp_path: Path):
    c = tmp_path / "clinical.csv"
    c.write_text(CLINICAL_HEADER + 'P1,3,9.4,310,2.1,garbage xx\nP2,80,8,25,0.5,"46,XX,t(15;17)(q24;q21)[20]"\n')
    out = tmp_path / "scores.csv"
    res = runner.invoke(app, ["cohort", "score", "--clinical", str(c), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text().startswith("ID,ELN2022,ELN2022_REASON,")  # plain CSV: no comment line
    df = pd.read_csv(out, keep_default_na=False).set_index("ID")
    assert df.loc["P1", "IPSSM"] == "undetermined" and "karyotype (unreadable)" in df.loc["P1", "IPSSM_REASON"]
    assert df.loc["P2", "ELN2022"] == "not applicable" and "APL" in df.loc["P2", "ELN2022_REASON"]
    assert "undetermined" in _flat(res) and "_REASONcolumns" in _flat(res)
