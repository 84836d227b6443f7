"""score_patient and score_cohort: same answers alone and in a cohort; reports; JSON round trip."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hemotwin.errors import InputError
from hemotwin.prognosis.patient import Patient, load_patient, status_text
from hemotwin.prognosis.scoring import COHORT_COLUMNS, RiskReport, score_cohort, score_patient
from hemotwin.prognosis.tables import validate_clinical, validate_molecular

PATIENTS = [
    dict(id="A", disease="MDS", karyotype="46,XY,del(5)(q13q33)[20]", bm_blast_pct=3, hb_g_dl=9.4,
         plt_1e9_per_l=310, anc_1e9_per_l=2.1,
         mutations=[{"gene": "SF3B1", "vaf": 0.38, "effect": "non_synonymous_codon", "protein_change": "p.K700E"}]),
    dict(id="B", disease="AML", karyotype="46,XX[20]", bm_blast_pct=45, hb_g_dl=8.1, plt_1e9_per_l=40,
         anc_1e9_per_l=0.5, mutations=[{"gene": "NPM1", "vaf": 0.4, "effect": "frameshift_variant",
                                        "protein_change": "p.W288fs"},
                                       {"gene": "FLT3", "vaf": 0.2, "effect": "ITD"}]),
    dict(id="C", karyotype="44,XY,-5,-7,-17,+mar[20]", bm_blast_pct=12, hb_g_dl=7.5, plt_1e9_per_l=23,
         anc_1e9_per_l=0.24, mutations=[{"gene": "TP53", "vaf": 0.62, "effect": "non_synonymous_codon",
                                         "protein_change": "p.R248Q"}]),
    dict(id="D", karyotype="", bm_blast_pct=None, hb_g_dl=11, plt_1e9_per_l=150, anc_1e9_per_l=None,
         mutations=[{"gene": "ASXL1", "vaf": 0.3}, {"gene": "RUNX1", "vaf": 0.2}]),
    dict(id="E", karyotype="46,XY,t(8;21)(q22;q22)[20]", bm_blast_pct=30, hb_g_dl=9, plt_1e9_per_l=80,
         anc_1e9_per_l=1.0, mutations=[{"gene": "KIT", "vaf": 0.3, "protein_change": "p.D816V"}]),
    dict(id="F", karyotype="46,XX,t(15;17)(q24;q21)[20]", bm_blast_pct=80, hb_g_dl=8, plt_1e9_per_l=25,
         anc_1e9_per_l=0.5, mutations=[{"gene": "FLT3", "vaf": 0.3, "effect": "ITD"}]),
    dict(id="G", karyotype="garbage xx", bm_blast_pct=3, hb_g_dl=9.4, plt_1e9_per_l=310, anc_1e9_per_l=2.1,
         mutations=[{"gene": "TET2", "vaf": 0.3}]),
]


def _cohort(panel):
    clin = pd.DataFrame([{"ID": p["id"], "BM_BLAST": p["bm_blast_pct"], "HB": p["hb_g_dl"],
                          "PLT": p["plt_1e9_per_l"], "ANC": p["anc_1e9_per_l"], "CYTOGENETICS": p["karyotype"]}
                         for p in PATIENTS])
    rows = [{"ID": p["id"], "GENE": m["gene"], "VAF": m.get("vaf"), "EFFECT": m.get("effect", ""),
             "PROTEIN_CHANGE": m.get("protein_change", "")} for p in PATIENTS for m in p["mutations"]]
    return score_cohort(validate_clinical(clin), validate_molecular(pd.DataFrame(rows)), sequenced_genes=panel)


@pytest.mark.parametrize("panel", ["all", None])
def test_cohort_equals_patient_by_patient(panel):
    table = _cohort(panel).set_index("ID")
    assert list(table.reset_index().columns) == list(COHORT_COLUMNS)
    seen = sorted({m["gene"] for p in PATIENTS for m in p["mutations"]})
    for spec in PATIENTS:
        r = score_patient(Patient(**spec, sequenced_genes="all" if panel == "all" else seen))
        row = table.loc[spec["id"]]
        for col, res in (("ELN2022", r.eln2022), ("ELN2024", r.eln2024), ("IPSSR", r.ipssr), ("IPSSM", r.ipssm)):
            # The table and the patient's own result agree: category or status, and the same reason.
            assert row[col] == (res.category if res.determined else res.status), (spec["id"], col)
            assert row[f"{col}_REASON"] == status_text(res.reason, res.deciding_inputs), (spec["id"], col)
        assert row["IPSSM_SCORE"] == pytest.approx(r.ipssm.score)
        assert row["IPSSM_BEST"] == pytest.approx(r.ipssm.score_best)
        assert row["IPSSM_WORST"] == pytest.approx(r.ipssm.score_worst)
        if r.ipssr.score is None:
            assert math.isnan(row["IPSSR_SCORE"])
        else:
            assert row["IPSSR_SCORE"] == r.ipssr.score


def test_expected_categories():
    t = _cohort("all").set_index("ID")
    assert t.loc["A", "ELN2022"] == "Adverse" and t.loc["A", "CYTO_IPSSR"] == "good"
    assert t.loc["B", "ELN2022"] == "Intermediate" and t.loc["B", "ELN2024"] == "Intermediate"
    assert t.loc["C", "ELN2022"] == "Adverse" and t.loc["C", "IPSSM"] == "Very High" and t.loc["C", "COMPLEX"] == 1
    assert t.loc["D", "IPSSR"] == "undetermined" and "no karyotype" in t.loc["D", "warnings"]
    assert "decided by karyotype (not given), marrow blasts, ANC" in t.loc["D", "IPSSR_REASON"]
    assert t.loc["E", "ELN2022"] == "Favorable" and t.loc["E", "ELN2022_REASON"] == ""
    # APL: no ELN group, whatever the FLT3-ITD; the reason says why.
    assert t.loc["F", "ELN2022"] == "not applicable" and "APL" in t.loc["F", "ELN2022_REASON"]
    assert t.loc["F", "ELN2024"] == "not applicable"
    # An unreadable karyotype: ELN, IPSS-R and IPSS-M undetermined, and the karyotype is what decides.
    for col in ("ELN2022", "IPSSR", "IPSSM"):
        assert t.loc["G", col] == "undetermined", col
        assert t.loc["G", f"{col}_REASON"].endswith("decided by karyotype (unreadable)"), col


def test_report_round_trips_through_json_and_summarises():
    r = score_patient(Patient(**PATIENTS[1], sequenced_genes="all"))
    again = RiskReport.model_validate_json(r.model_dump_json())
    assert again == r
    assert "For research use only" in r.summary and "ELN 2022: Intermediate" in r.summary
    assert "NPM1 with FLT3-ITD" in r.summary and "[MDS score]" in r.summary


def test_missing_panel_is_warned():
    r = score_patient(Patient(**PATIENTS[0]))
    assert any("not sequenced" in w for w in r.warnings)
    assert not r.ipssm.complete and r.ipssm.score_best < r.ipssm.score < r.ipssm.score_worst


@pytest.mark.parametrize(("field", "value", "text"), [
    ("plt_1e9_per_l", 150000, "looks like /µL"), ("hb_g_dl", 95, "looks like g/L"),
    ("wbc_1e9_per_l", 5000, "looks like /µL"), ("anc_1e9_per_l", 1500, "looks like /µL"),
    ("bm_blast_pct", 120, "100"),
])
def test_patient_unit_checks(tmp_path, field, value, text):
    import json

    f = tmp_path / "p.json"
    f.write_text(json.dumps({"id": "x", field: value}))
    with pytest.raises(InputError) as ei:
        load_patient(f)
    assert field in str(ei.value) and text in str(ei.value)


def test_patient_vaf_errors_and_unknown_fields(tmp_path):
    import json

    f = tmp_path / "p.json"
    f.write_text(json.dumps({"id": "x", "mutations": [{"gene": "TP53", "vaf": 45}, {"gene": "ASXL1", "vaf": 0.3}]}))
    with pytest.raises(InputError, match="mixes"):
        load_patient(f)
    f.write_text(json.dumps({"id": "x", "hb": 9}))
    with pytest.raises(InputError, match="hb"):
        load_patient(f)
    f.write_text("{not json")
    with pytest.raises(InputError, match="JSON"):
        load_patient(f)


def test_cohort_without_molecular_table_treats_genes_as_unknown():
    clin = validate_clinical(pd.DataFrame([{"ID": "a", "BM_BLAST": 3, "HB": 10, "PLT": 100, "ANC": 1,
                                            "CYTOGENETICS": "46,XX[20]"}]))
    t = score_cohort(clin, None)
    assert t.loc[0, "IPSSM_BEST"] < t.loc[0, "IPSSM_SCORE"] < t.loc[0, "IPSSM_WORST"]
    assert t.loc[0, "ELN2022"] == "undetermined" and "NPM1" in t.loc[0, "ELN2022_REASON"]
    assert np.isfinite(t.loc[0, "IPSSR_SCORE"])
