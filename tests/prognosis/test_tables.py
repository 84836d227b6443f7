"""Cohort table readers (docs/clinical_rules.md §9): schemas, units, impossible values, IDs, warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from hemotwin.errors import InputError
from hemotwin.prognosis.tables import (
    check_ids,
    read_clinical,
    read_cohort,
    read_molecular,
    read_target,
    validate_clinical,
    warnings_of,
)

HEAD = "ID,CENTER,BM_BLAST,WBC,ANC,MONOCYTES,HB,PLT,CYTOGENETICS"
GOOD = "P1,A,5,3.2,1.1,0.3,9.5,120,\"46,XX[20]\"\nP2,B,12,,0.5,,8,45,\n"


def _w(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_clinical_reads_and_keeps_extra_columns(tmp_path):
    p = _w(tmp_path, "c.csv", HEAD + ",AGE,SEX,X_note\n" + "P1,A,5,3.2,1.1,0.3,9.5,120,\"46,XX[20]\",70,F,hi\n"
           + "\nP2,B,12,,0.5,,8,45,,,,\n")
    df = read_clinical(p)
    assert list(df.index) == ["P1", "P2"] and df.index.name == "ID"
    assert df.loc["P1", "X_note"] == "hi" and df.loc["P1", "AGE"] == 70
    assert df["WBC"].isna().tolist() == [False, True]      # blank is missing, never zero
    assert df.loc["P2", "CYTOGENETICS"] == ""
    assert any("without a karyotype" in str(w) for w in warnings_of(df))


# (case, header, row, text the error must contain)
CLINICAL_ERRORS = [
    ("plt_per_uL", HEAD, "P1,A,5,3,1,0.3,9.5,250000,\"46,XX\"", ["line 2", "P1", "PLT", "250000", "/µL"]),
    ("wbc_per_uL", HEAD, "P1,A,5,3200,1,0.3,9.5,120,\"46,XX\"", ["WBC", "/µL"]),
    ("anc_per_uL", HEAD, "P1,A,5,3,1500,0.3,9.5,120,\"46,XX\"", ["ANC", "/µL"]),
    ("hb_g_per_L", HEAD, "P1,A,5,3,1,0.3,95,120,\"46,XX\"", ["HB", "g/L"]),
    ("blasts_over_100", HEAD, "P1,A,105,3,1,0.3,9.5,120,\"46,XX\"", ["BM_BLAST", "0 and 100"]),
    ("negative", HEAD, "P1,A,5,-3,1,0.3,9.5,120,\"46,XX\"", ["WBC", ">= 0"]),
    ("not_a_number", HEAD, "P1,A,five,3,1,0.3,9.5,120,\"46,XX\"", ["BM_BLAST", "five", "number"]),
    ("unknown_column", HEAD + ",FOO", "P1,A,5,3,1,0.3,9.5,120,46,x", ["FOO", "known columns", "X_"]),
    ("missing_required", "ID,CENTER,BM_BLAST,HB,PLT,CYTOGENETICS", "P1,A,5,9.5,120,x", ["ANC", "required"]),
    ("blank_id", HEAD, ",A,5,3,1,0.3,9.5,120,x", ["ID"]),
]


@pytest.mark.parametrize(("case", "head", "row", "texts"), CLINICAL_ERRORS, ids=[c[0] for c in CLINICAL_ERRORS])
def test_clinical_errors_name_row_column_value(tmp_path, case, head, row, texts):
    p = _w(tmp_path, "c.csv", head + "\n" + row + "\n")
    with pytest.raises(InputError) as ei:
        read_clinical(p)
    for t in texts:
        assert t in str(ei.value), str(ei.value)


def test_unquoted_comma_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match=r"line 2.*quote"):
        read_clinical(_w(tmp_path, "c.csv", HEAD + "\nP1,A,5,3,1,0.3,9.5,120,46,XX[20]\n"))


def test_duplicate_ids_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="each patient ID once"):
        read_clinical(_w(tmp_path, "d.csv", HEAD + "\n" + GOOD + "P1,A,1,1,1,1,10,100,x\n"))
    with pytest.raises(InputError, match="empty file"):
        read_clinical(_w(tmp_path, "e.csv", ""))
    with pytest.raises(InputError, match="at least one patient"):
        read_clinical(_w(tmp_path, "h.csv", HEAD + "\n"))
    with pytest.raises(InputError, match="existing"):
        read_clinical(tmp_path / "nope.csv")


MOL_HEAD = "ID,CHR,START,END,REF,ALT,GENE,PROTEIN_CHANGE,EFFECT,VAF,DEPTH"


def test_molecular_percent_vafs_unknown_genes_and_effects(tmp_path):
    p = _w(tmp_path, "m.csv", MOL_HEAD + "\nP1,13,1,2,A,T,FLT3,p.D835Y,non_synonymous_codon,0.3,100\n"
           "P2,17,1,2,A,T,TP53,p.R273H,non_synonymous_codon,45,100\nP2,17,1,2,A,T,mll,,PTD,30,100\n"
           "P2,1,1,2,A,T,FOO1,,weird,12,10\n")
    m = read_molecular(p)
    assert m.loc[3, "VAF"] == pytest.approx(0.45) and m.loc[4, "GENE"] == "KMT2A"
    text = " ".join(map(str, warnings_of(m)))
    assert "FOO1" in text and "weird" in text and "percentage" in text and "P2" in text


@pytest.mark.parametrize(("row", "texts"), [
    ("P1,1,1,2,A,T,TP53,,x,-0.1,10", ["VAF", "-0.1"]),
    ("P1,1,1,2,A,T,TP53,,x,140,10", ["VAF", "140"]),
    ("P1,1,1,2,A,T,TP53,,x,45,10\nP1,1,1,2,A,T,ASXL1,,x,0.3,10", ["line 2", "mixes"]),
    ("P1,1,1,2,A,T,,,x,0.3,10", ["GENE"]),
    ("P1,1,1,2,A,T,TP53,,x,0.3,-5", ["DEPTH"]),
])
def test_molecular_errors(tmp_path, row, texts):
    with pytest.raises(InputError) as ei:
        read_molecular(_w(tmp_path, "m.csv", MOL_HEAD + "\n" + row + "\n"))
    for t in texts:
        assert t in str(ei.value)


def test_molecular_header_only_is_no_mutation(tmp_path):
    assert len(read_molecular(_w(tmp_path, "m.csv", MOL_HEAD + "\n"))) == 0


def test_target(tmp_path):
    t = read_target(_w(tmp_path, "t.csv", "ID,OS_YEARS,OS_STATUS\nP1,1.5,1\nP2,,0\nP3,3,0\n"))
    assert list(t.index) == ["P1", "P3"] and t["OS_STATUS"].dtype.kind == "i"
    assert any("dropped" in str(w) for w in warnings_of(t))
    for bad, text in (("P1,-1,1", "OS_YEARS"), ("P1,1,2", "OS_STATUS"), ("P1,400,1", "days or months")):
        with pytest.raises(InputError, match=text):
            read_target(_w(tmp_path, "t2.csv", "ID,OS_YEARS,OS_STATUS\n" + bad + "\n"))


def test_cohort_ids_cross_check(tmp_path):
    c = _w(tmp_path, "c.csv", HEAD + "\n" + GOOD)
    m = _w(tmp_path, "m.csv", MOL_HEAD + "\nP9,1,1,2,A,T,TP53,,x,0.3,10\n")
    tabs = read_cohort(c, m)
    assert any("P9" in str(w) and "not in the clinical" in str(w) for w in tabs.warnings)
    assert check_ids(tabs.clinical, None) == []


def test_validate_accepts_a_dataframe_with_id_index():
    import pandas as pd

    df = pd.DataFrame({"ID": ["a"], "BM_BLAST": [3.0], "HB": [10.0], "PLT": [100.0], "ANC": [1.0],
                       "CYTOGENETICS": ["46,XX[20]"]}).set_index("ID")
    out = validate_clinical(df)
    assert out.loc["a", "HB"] == 10.0
    bad = df.assign(PLT=[150000.0])
    with pytest.raises(InputError, match="line 2 \\(ID a\\), column PLT"):
        validate_clinical(bad)
