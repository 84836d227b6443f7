"""Mutation features: gene calls, FLT3-ITD/TKD, KMT2A-PTD, CEBPA bZIP, TP53, panels, VAF units."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hemotwin.errors import InputError
from hemotwin.prognosis.mutations import (
    SCORED_GENES,
    Mutation,
    classify_variant,
    mutation_features,
    mutation_matrix,
    normalize_gene,
    protein_position,
)

# (gene, effect, protein change) -> expected flags (itd, tkd, ptd, cebpa_bzip); NaN = cannot tell
VARIANTS = [
    ("FLT3", "ITD", "", (1, 0, 0, 0)),
    ("FLT3", "", "p.ITD", (1, 0, 0, 0)),
    ("FLT3", "inframe_insertion", "p.E598_Y599insGEYFYVDF", (1, 0, 0, 0)),
    ("FLT3", "non_synonymous_codon", "p.D835Y", (0, 1, 0, 0)),
    ("FLT3", "non_synonymous_codon", "p.I836S", (0, 1, 0, 0)),
    ("FLT3", "inframe_deletion", "p.I836del", (0, 1, 0, 0)),
    ("FLT3", "non_synonymous_codon", "p.N676K", (0, 0, 0, 0)),
    ("FLT3", "", "", (math.nan, math.nan, 0, 0)),
    ("KMT2A", "PTD", "", (0, 0, 1, 0)),
    ("KMT2A", "frameshift_variant", "p.K1000fs", (0, 0, 0, 0)),
    ("CEBPA", "inframe_insertion", "p.K313dup", (0, 0, 0, 1)),
    ("CEBPA", "inframe_deletion", "p.Q312_K313del", (0, 0, 0, 1)),
    ("CEBPA", "non_synonymous_codon", "p.N321D", (0, 0, 0, 1)),
    ("CEBPA", "non_synonymous_codon", "p.R278W", (0, 0, 0, 1)),
    ("CEBPA", "non_synonymous_codon", "p.A346V", (0, 0, 0, 0)),
    ("CEBPA", "frameshift_variant", "p.P23fs", (0, 0, 0, 0)),
    ("CEBPA", "frameshift_variant", "p.Q312fs", (0, 0, 0, 0)),
    ("CEBPA", "inframe_insertion", "", (0, 0, 0, math.nan)),
    ("CEBPA", "", "p.K313dup", (0, 0, 0, 1)),
]


@pytest.mark.parametrize(("gene", "effect", "change", "exp"), VARIANTS)
def test_classify_variant(gene, effect, change, exp):
    got = classify_variant(gene, effect, change)
    for key, e in zip(("flt3_itd", "flt3_tkd", "kmt2a_ptd", "cebpa_bzip"), exp, strict=True):
        assert (math.isnan(got[key]) and math.isnan(e)) or got[key] == e, key


def test_gene_names_and_positions():
    assert normalize_gene(" mll ") == "KMT2A" and normalize_gene("tp53") == "TP53"
    assert protein_position("p.Q305_Q306insL") == 305 and protein_position("D835Y") == 835
    assert protein_position("?") is None


def test_gene_calls_count_and_max_vaf():
    f = mutation_features([Mutation(gene="TP53", vaf=0.2), Mutation(gene="tp53", vaf=0.4),
                           Mutation(gene="ASXL1", vaf=0.3)], sequenced_genes="all")
    calls = {c.gene: c for c in f.calls}
    assert calls["TP53"].n == 2 and calls["TP53"].max_vaf == 0.4
    assert f.tp53_n == 2 and f.tp53_multihit is True and f.tp53_vaf_ge10 is True


def test_not_sequenced_is_not_wild_type():
    f = mutation_features([Mutation(gene="NPM1", vaf=0.4)])
    assert f.status("NPM1") is True and f.status("FLT3") is None and f.flt3_itd is None and f.tp53_n is None
    g = mutation_features([Mutation(gene="NPM1", vaf=0.4)], sequenced_genes=["NPM1", "FLT3"])
    assert g.status("FLT3") is False and g.flt3_itd is False and g.status("TP53") is None
    h = mutation_features([], sequenced_genes="all")
    assert all(h.status(x) is False for x in SCORED_GENES)


@pytest.mark.parametrize(("muts", "m17", "exp"), [
    ([0.3], False, False), ([0.3], True, True), ([0.56], None, True), ([0.3], None, None),
    ([0.1, 0.1], False, True), ([], None, False),
])
def test_tp53_multihit_from_mutations_and_karyotype(muts, m17, exp):
    f = mutation_features([Mutation(gene="TP53", vaf=v) for v in muts], sequenced_genes="all", minus17=m17)
    assert f.tp53_multihit is exp


def test_tp53_vaf_threshold_and_unknown_vaf():
    assert mutation_features([Mutation(gene="TP53", vaf=0.099)], sequenced_genes="all").tp53_vaf_ge10 is False
    assert mutation_features([Mutation(gene="TP53", vaf=0.10)], sequenced_genes="all").tp53_vaf_ge10 is True
    assert mutation_features([Mutation(gene="TP53")], sequenced_genes="all").tp53_vaf_ge10 is None


def test_vaf_percent_warning_and_errors():
    f = mutation_features([Mutation(gene="TP53", vaf=45), Mutation(gene="ASXL1", vaf=30)], sequenced_genes="all")
    assert f.tp53_max_vaf == pytest.approx(0.45) and any("percent" in w for w in f.warnings)
    with pytest.raises(InputError, match="mixes"):
        mutation_features([Mutation(gene="TP53", vaf=45), Mutation(gene="ASXL1", vaf=0.3)])
    for bad in (-0.1, 101):
        with pytest.raises(InputError):
            mutation_features([Mutation(gene="TP53", vaf=bad)])


def test_unknown_gene_warns():
    f = mutation_features([Mutation(gene="TP35", vaf=0.3)])
    assert any("TP35" in w for w in f.warnings)


def test_mutation_matrix_default_panel_is_genes_seen():
    mol = pd.DataFrame({"ID": ["a", "a", "b"], "GENE": ["NPM1", "FLT3", "TP53"], "VAF": [0.4, 0.3, 0.6],
                        "EFFECT": ["frameshift_variant", "ITD", "non_synonymous_codon"],
                        "PROTEIN_CHANGE": ["p.W288fs", "", "p.R273H"]})
    m = mutation_matrix(mol, ["a", "b", "c"])
    assert list(m["MUT_NPM1"]) == [1.0, 0.0, 0.0]          # NPM1 seen in the table -> on the panel
    assert np.isnan(m.loc["c", "MUT_ASXL1"])               # never seen -> not sequenced
    assert list(m["FLT3_ITD"]) == [1.0, 0.0, 0.0]
    assert m.loc["b", "TP53_N"] == 1 and m.loc["b", "TP53_MAXVAF"] == 0.6 and m.loc["c", "TP53_N"] == 0
    full = mutation_matrix(mol, ["a", "b", "c"], sequenced_genes="all")
    assert full.loc["c", "MUT_ASXL1"] == 0.0
    none = mutation_matrix(None, ["a"])
    assert np.isnan(none.loc["a", "MUT_TP53"])
