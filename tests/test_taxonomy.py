"""Label names, label sets and hierarchical collapse (docs/clinical_rules.md §11 as data)."""

from __future__ import annotations

import numpy as np
import pytest

from hemotwin.errors import InputError
from hemotwin.taxonomy import (
    BLAST_CODES,
    CLASS_CODES,
    LABEL_SETS,
    collapse,
    collapse_matrix,
    label_set,
    resolve_label,
)


def test_fifteen_codes_in_taxonomy_order() -> None:
    assert CLASS_CODES == ("MYO", "MOB", "PMO", "PMB", "MYB", "MMZ", "NGB", "NGS", "EOS", "BAS", "LYT", "LYA",
                           "MON", "EBO", "KSC")
    assert len(LABEL_SETS["pbc"]) == 8 and len(LABEL_SETS["wbc5"]) == 5
    assert set(BLAST_CODES) == {"MYO", "MOB"}


@pytest.mark.parametrize(("name", "canon"), [
    ("NEUTROPHIL", "neutrophil"), ("neutrophils", "neutrophil"), (" Neutrophil ", "neutrophil"),
    ("SNE", "NGS"), ("seg", "NGS"), ("Segmented-Neutrophil", "NGS"), ("ngs", "NGS"),
    ("BNE", "NGB"), ("band_neutrophil", "NGB"), ("LYMPHOCYTE", "lymphocyte"), ("LYT", "LYT"),
    ("reactive lymphocyte", "LYA"), ("MONOCYTE", "monocyte"), ("MON", "MON"), ("EOSINOPHIL", "eosinophil"),
    ("Eosinophils", "eosinophil"), ("EOS", "EOS"), ("BASOPHIL", "basophil"), ("BAS", "BAS"),
    ("ERYTHROBLAST", "erythroblast"), ("nrbc", "erythroblast"), ("EBO", "EBO"), ("IG", "ig"),
    ("immature granulocyte", "ig"), ("myelocyte", "MYB"), ("MY", "MYB"), ("metamyelocyte", "MMZ"),
    ("MMY", "MMZ"), ("promyelocyte", "PMO"), ("PMY", "PMO"), ("blast", "MYO"), ("myeloblast", "MYO"),
    ("platelet", "platelet"), ("PLT", "platelet"), ("thrombocytes", "platelet"), ("smudge", "KSC"),
    ("neutrófilo", "neutrophil"),
])
def test_synonyms_and_case(name: str, canon: str) -> None:
    assert resolve_label(name) == canon


def test_label_set_narrows_or_widens() -> None:
    assert resolve_label("SNE", label_set="pbc") == "neutrophil"  # up to the ancestor in the set
    assert resolve_label("MY", label_set="pbc") == "ig"
    assert resolve_label("eosinophil", label_set="matek15") == "EOS"  # the only descendant in the set
    assert resolve_label("PLT", label_set="matek15+platelet") == "platelet"


def test_ambiguous_and_absent_labels_are_rejected() -> None:
    with pytest.raises(InputError, match="NGB, NGS"):
        resolve_label("neutrophil", label_set="matek15")  # band or segmented: cannot guess
    with pytest.raises(InputError, match="label of wbc5"):
        resolve_label("blast", label_set="wbc5")  # a blast is never a neutrophil


def test_unknown_label_error_names_where_and_lists_valid() -> None:
    with pytest.raises(InputError) as e:
        resolve_label("banana", where="data/banana (class folder name)")
    msg = str(e.value)
    assert "data/banana (class folder name)" in msg and "'banana'" in msg
    assert "NGS" in msg and "neutrophil" in msg and "platelet" in msg


def test_label_set_specs() -> None:
    assert label_set("matek15+PLT") == (*CLASS_CODES, "platelet")
    assert label_set(["Neutrophils", "lymphocyte", "neutrophil"]) == ("neutrophil", "lymphocyte")
    with pytest.raises(InputError):
        label_set([])


def test_collapse_matrix_15_to_pbc_and_wbc5() -> None:
    m = collapse_matrix("matek15", "pbc")
    pbc = LABEL_SETS["pbc"]
    rows = dict(zip(CLASS_CODES, m, strict=True))
    assert pbc[int(np.argmax(rows["NGB"]))] == "neutrophil" and pbc[int(np.argmax(rows["LYA"]))] == "lymphocyte"
    assert {c for c in CLASS_CODES if rows[c].sum() == 0} == {"MYO", "MOB", "KSC"}
    assert all(pbc[int(np.argmax(rows[c]))] == "ig" for c in ("PMO", "PMB", "MYB", "MMZ"))
    m5 = collapse_matrix("pbc", "wbc5")
    assert {lab for lab, r in zip(pbc, m5, strict=True) if r.sum() == 0} == {"erythroblast", "ig", "platelet"}
    assert m.sum(axis=1).max() == 1  # never split one class between two parents


def test_collapse_sums_renormalises_and_reports_dropped_mass() -> None:
    src = label_set("matek15")
    p = np.zeros((3, 15))
    p[0, src.index("NGS")], p[0, src.index("NGB")], p[0, src.index("LYT")] = 0.5, 0.3, 0.2
    p[1, src.index("MYO")], p[1, src.index("NGS")] = 0.6, 0.4  # mostly blast
    p[2, src.index("KSC")] = 1.0  # all mass on a class with no parent
    before = p.copy()
    out, dropped = collapse(p, "matek15", "wbc5")
    wbc5 = LABEL_SETS["wbc5"]
    assert out[0, wbc5.index("neutrophil")] == pytest.approx(0.8)
    assert out[0, wbc5.index("lymphocyte")] == pytest.approx(0.2)
    assert dropped[0] == pytest.approx(0.0)
    assert out[1, wbc5.index("neutrophil")] == pytest.approx(1.0)  # renormalised ...
    assert dropped[1] == pytest.approx(0.6)  # ... but the blast mass is reported
    assert np.all(np.isnan(out[2])) and dropped[2] == pytest.approx(1.0)
    np.testing.assert_array_equal(p, before)
    raw, _ = collapse(p[:2], "matek15", "wbc5", renormalize=False)
    np.testing.assert_allclose(raw.sum(axis=1), [1.0, 0.4])


def test_collapse_extra_platelet_class_and_1d() -> None:
    labels = label_set("matek15+platelet")
    p = np.zeros(16)
    p[-1] = 0.7
    p[labels.index("EBO")] = 0.3
    out, dropped = collapse(p, labels, "pbc")
    pbc = LABEL_SETS["pbc"]
    assert out[pbc.index("platelet")] == pytest.approx(0.7) and out[pbc.index("erythroblast")] == pytest.approx(0.3)
    assert dropped == pytest.approx(0.0)


def test_collapse_rejects_bad_probs() -> None:
    with pytest.raises(InputError, match="probs"):
        collapse(np.ones((2, 7)), "matek15", "pbc")
    with pytest.raises(InputError, match="probs"):
        collapse(-np.ones(15), "matek15", "pbc")
