"""ELN 2022 (docs/clinical_rules.md §3, every row and footnote) and ELN 2024 less-intensive (§4), table-driven."""

from __future__ import annotations

import pytest

from hemotwin.prognosis.cytogenetics import KaryotypeFeatures
from hemotwin.prognosis.patient import Patient
from hemotwin.prognosis.scoring import KARYOTYPE_FLAGS, score_patient


def kary(**flags) -> KaryotypeFeatures:
    """An evaluable karyotype with every flag False except those given."""
    base = {name: False for name in KARYOTYPE_FLAGS}
    base.update(flags)
    return KaryotypeFeatures(text="(explicit)", evaluable=True, ipssr_group="good", **base)


def muts(*specs) -> list[dict]:
    """'GENE' or ('GENE', vaf, effect, protein_change)."""
    out = []
    for s in specs:
        if isinstance(s, str):
            out.append({"gene": s, "vaf": 0.4})
        else:
            g, vaf, eff, pc = (*s, "", "")[:4]
            out.append({"gene": g, "vaf": vaf, "effect": eff, "protein_change": pc})
    return out


ITD = ("FLT3", 0.3, "ITD", "")
TKD = ("FLT3", 0.3, "non_synonymous_codon", "p.D835Y")
CEBPA_BZIP = ("CEBPA", 0.4, "inframe_insertion", "p.K313dup")
CEBPA_TAD = ("CEBPA", 0.4, "frameshift_variant", "p.P23fs")
PTD = ("KMT2A", 0.3, "PTD", "")

# (case id, karyotype flags, mutations, ELN 2022 category, a text expected in the rules or notes)
ELN2022_CASES = [
    ("t8_21", {"t8_21": True}, [], "Favorable", "t(8;21)"),
    ("inv16", {"inv16_t16_16": True}, [], "Favorable", "inv(16)"),
    ("note_a_kit", {"t8_21": True}, ["KIT", ITD], "Favorable", "note a"),
    ("npm1", {"normal": True}, ["NPM1"], "Favorable", "NPM1 without FLT3-ITD"),
    ("npm1_tkd_is_not_itd", {}, ["NPM1", TKD], "Favorable", "NPM1 without FLT3-ITD"),
    ("cebpa_bzip", {}, [CEBPA_BZIP], "Favorable", "bZIP"),
    ("cebpa_tad_not_fav", {}, [CEBPA_TAD], "Intermediate", "note c"),
    ("npm1_itd", {}, ["NPM1", ITD], "Intermediate", "NPM1 with FLT3-ITD"),
    ("itd_alone", {}, [ITD], "Intermediate", "wild-type NPM1 with FLT3-ITD"),
    ("t9_11", {"t9_11": True}, [], "Intermediate", "t(9;11)"),
    ("note_d_t9_11_over_mr", {"t9_11": True}, ["RUNX1", ("TP53", 0.4)], "Intermediate", "note d"),
    ("nothing", {"normal": True}, ["TET2"], "Intermediate", "no favorable- or adverse-risk"),
    ("t6_9", {"t6_9": True}, [], "Adverse", "t(6;9)"),
    ("kmt2a_r", {"kmt2a_other": True}, [], "Adverse", "KMT2A-rearranged"),
    ("note_e_ptd", {}, [PTD], "Intermediate", "note e"),
    ("t9_22", {"t9_22": True}, [], "Adverse", "BCR::ABL1"),
    ("t8_16", {"t8_16": True}, [], "Adverse", "KAT6A"),
    ("inv3", {"inv3_t3_3": True}, [], "Adverse", "inv(3)"),
    ("mecom", {"mecom_3q26": True}, [], "Adverse", "MECOM-rearranged"),
    ("minus5", {"minus5": True}, [], "Adverse", "-5 or del(5q)"),
    ("del5q", {"del5q": True}, [], "Adverse", "-5 or del(5q)"),
    ("minus7", {"minus7": True}, [], "Adverse", "-7"),
    ("minus17", {"minus17_abn17p": True}, [], "Adverse", "-17/abn(17p)"),
    ("complex", {"complex": True}, [], "Adverse", "complex"),
    ("note_f_hyperdiploid", {"complex": False, "hyperdiploid_trisomies_only": True}, [], "Intermediate", "note f"),
    ("monosomal", {"monosomal": True}, [], "Adverse", "monosomal"),
    ("note_b_npm1_adverse_cyto", {"minus7": True}, ["NPM1"], "Adverse", "note b"),
    ("tp53_ge10", {}, [("TP53", 0.10)], "Adverse", "TP53 with VAF >= 10"),
    ("note_i_tp53_lt10", {}, [("TP53", 0.099)], "Intermediate", "note i"),
    ("tp53_over_npm1", {}, ["NPM1", ("TP53", 0.3)], "Adverse", "TP53"),
    ("cbf_with_tp53", {"t8_21": True}, [("TP53", 0.3)], "Favorable", "t(8;21)"),
    *[(f"mr_{g}", {}, [g], "Adverse", f"mutated {g}")
      for g in ("ASXL1", "BCOR", "EZH2", "RUNX1", "SF3B1", "SRSF2", "STAG2", "U2AF1", "ZRSR2")],
    ("note_h_npm1_mr", {}, ["NPM1", "ASXL1"], "Favorable", "note h"),
    ("note_h_cebpa_mr", {}, [CEBPA_BZIP, "RUNX1"], "Favorable", "note h"),
    ("mr_with_itd", {}, ["RUNX1", ITD], "Adverse", "mutated RUNX1"),
]


@pytest.mark.parametrize(("case", "flags", "mutations", "category", "text"), ELN2022_CASES,
                         ids=[c[0] for c in ELN2022_CASES])
def test_eln2022_rows_and_notes(case, flags, mutations, category, text):
    p = Patient(id=case, disease="AML", cytogenetics=kary(**flags), mutations=muts(*mutations),
                sequenced_genes="all")
    r = score_patient(p).eln2022
    assert r.category == category
    assert any(text in s for s in r.rules + r.notes), (r.rules, r.notes)
    assert r.complete


def test_eln2022_unknown_karyotype_is_undetermined():
    # Adverse cytogenetics would override NPM1: with no karyotype the group is not known.
    p = Patient(id="x", cytogenetics=KaryotypeFeatures(), mutations=muts("NPM1"), sequenced_genes="all")
    r = score_patient(p).eln2022
    assert r.category is None and r.category_estimate == "Favorable" and not r.determined and not r.complete
    assert r.status == "undetermined" and r.deciding_inputs == ["karyotype (not given)"]
    assert "Favorable" in r.reason and "Adverse" in r.reason
    assert r.headline.startswith("ELN 2022: undetermined") and "karyotype (not given)" in r.headline
    assert any("-7" in m for m in r.missing)


def test_eln2022_unreadable_karyotype_is_named_as_such():
    p = Patient(id="x", karyotype="garbage xx", mutations=[], sequenced_genes="all")
    r = score_patient(p).eln2022
    assert r.category is None and r.deciding_inputs == ["karyotype (unreadable)"]


def test_eln2022_unsequenced_is_not_wild_type():
    # NPM1 mutated, panel unknown: FLT3-ITD and TP53 unknown -> no confident group; they decide it.
    p = Patient(id="x", cytogenetics=kary(normal=True), mutations=muts("NPM1"))
    r = score_patient(p).eln2022
    assert r.category is None and r.category_estimate == "Favorable" and not r.complete
    assert {"TP53", "FLT3"} <= set(r.deciding_inputs) and "karyotype" not in r.deciding_inputs
    assert any("FLT3" in m or "TP53" in m for m in r.missing)


@pytest.mark.parametrize("karyotype", ["46,XX,t(15;17)(q24;q21)[20]", "46,XY,t(15;17)(q24.1;q21.2)[18]/46,XY[2]"])
def test_apl_is_outside_eln(karyotype):
    # ELN 2022 leaves APL to its own risk assessment (Sanz score): no group, a reason, a Sanz note.
    p = Patient(id="apl", disease="AML", karyotype=karyotype, sequenced_genes="all", wbc_1e9_per_l=14,
                plt_1e9_per_l=30)
    rep = score_patient(p)
    for r in (rep.eln2022, rep.eln2024):
        assert r.category is None and r.category_estimate is None and not r.applicable
        assert r.status == "not applicable" and "APL" in r.reason and "Sanz" in r.reason
        assert r.headline.startswith(f"{r.name}: not applicable") and "APL" in r.headline
        assert any("Sanz score: high risk" in n for n in r.notes)
    assert "ELN 2022: not applicable" in rep.summary


def test_sanz_groups():
    from hemotwin.prognosis.scoring import sanz_note

    assert "high" in sanz_note(10.5, 100) and "low risk" in sanz_note(10, 41)
    assert "intermediate" in sanz_note(3, 40) and "needs the WBC" in sanz_note(None, 100)


def test_eln2022_unknown_lesion_of_same_category_keeps_it_complete():
    # t(8;21) decides at the first level; nothing before it can be unknown.
    p = Patient(id="x", cytogenetics=kary(t8_21=True), mutations=[])
    assert score_patient(p).eln2022.complete


# ELN 2024 less-intensive (§4): (case, mutations, regimen, category, text)
ELN2024_CASES = [
    ("tp53", [("TP53", 0.05)], "venetoclax", "Adverse", "TP53"),
    ("npm1", ["NPM1"], "venetoclax", "Favorable", "NPM1"),
    ("idh2", ["IDH2"], "venetoclax", "Favorable", "IDH2"),
    ("other", ["TET2"], "venetoclax", "Favorable", "other abnormalities"),
    ("npm1_itd", ["NPM1", ITD], "venetoclax", "Intermediate", "FLT3-ITD"),
    ("nras", ["NRAS"], "venetoclax", "Intermediate", "NRAS"),
    ("kras", ["IDH2", "KRAS"], "venetoclax", "Intermediate", "KRAS"),
    ("ddx41", ["DDX41", "NRAS"], "venetoclax", "Favorable", "DDX41"),
    ("idh1_ven", ["IDH1", "NRAS"], "venetoclax", "Intermediate", "NRAS"),
    ("idh1_ivo", ["IDH1", "NRAS"], "ivosidenib", "Favorable", "IDH1"),
    ("tp53_over_ddx41", ["DDX41", "TP53"], "venetoclax", "Adverse", "TP53"),
]


@pytest.mark.parametrize(("case", "mutations", "regimen", "category", "text"), ELN2024_CASES,
                         ids=[c[0] for c in ELN2024_CASES])
def test_eln2024_rows(case, mutations, regimen, category, text):
    p = Patient(id=case, disease="AML", cytogenetics=kary(), mutations=muts(*mutations), sequenced_genes="all")
    r = score_patient(p, regimen=regimen).eln2024
    assert r.category == category
    assert any(text in s for s in r.rules), r.rules
    assert any("previously treated with an HMA" in n for n in r.notes)


def test_eln2024_unknown_signalling_is_undetermined():
    p = Patient(id="x", cytogenetics=kary(), mutations=muts("NPM1"), sequenced_genes=["NPM1", "TP53"])
    r = score_patient(p).eln2024
    assert r.category is None and r.category_estimate == "Favorable" and not r.complete
    assert r.deciding_inputs == ["DDX41", "FLT3", "NRAS", "KRAS"]


def test_possible_categories_cover_every_completion_of_the_unknowns():
    # Soundness of "determined": whatever values the unknown inputs take, the category stays among
    # the possible ones (so a determined category cannot change). Brute force over random patients.
    import itertools

    import numpy as np

    from hemotwin.prognosis.eln import ELN2022_LEVELS, ELN_CATEGORIES, eln2024_levels, evaluate_levels

    for levels in (ELN2022_LEVELS, eln2024_levels("ivosidenib")):
        keys = sorted({k for lev in levels for r in lev.rules for k in r.inputs})
        rng = np.random.default_rng(7)
        for _ in range(150):
            values = {k: float(rng.random() < 0.2) for k in keys}
            unknown = list(rng.choice(keys, size=5, replace=False))
            ev = evaluate_levels(levels, {k: np.array([np.nan if k in unknown else v]) for k, v in values.items()})
            possible = {c for k, c in enumerate(ELN_CATEGORIES) if ev["possible"][k, 0]}
            combos = np.array(list(itertools.product((0.0, 1.0), repeat=len(unknown))))  # one row per completion
            filled = {k: np.full(len(combos), v) for k, v in values.items()}
            filled.update({k: combos[:, j] for j, k in enumerate(unknown)})
            seen = {ELN_CATEGORIES[c] for c in evaluate_levels(levels, filled)["category"]}
            assert seen <= possible, (unknown, seen, possible)
            if ev["determined"][0]:
                assert len(seen) == 1
