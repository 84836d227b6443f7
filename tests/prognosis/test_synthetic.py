"""Synthetic cohort: schema, realism bands, center heterogeneity and the planted survival model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from hemotwin.errors import InputError, OutputExistsError
from hemotwin.prognosis.synthetic import (
    CLINICAL_COLUMNS,
    MOLECULAR_COLUMNS,
    TARGET_COLUMNS,
    SurvivalEffects,
    simulate_cohort,
    write_cohort,
)


@pytest.fixture(scope="module")
def cohort():
    return simulate_cohort(2000, n_centers=5, seed=11)


def test_same_seed_same_tables_and_unpacking():
    a = simulate_cohort(150, n_centers=3, seed=3)
    b = simulate_cohort(150, n_centers=3, seed=3)
    c = simulate_cohort(150, n_centers=3, seed=4)
    clinical, molecular, target = a
    pd.testing.assert_frame_equal(clinical, b.clinical)
    pd.testing.assert_frame_equal(molecular, b.molecular)
    pd.testing.assert_frame_equal(target, b.target)
    assert not target.equals(c.target)


def test_schema_and_ids(cohort):
    clinical, molecular, target = cohort
    assert list(clinical.columns[: len(CLINICAL_COLUMNS)]) == CLINICAL_COLUMNS
    assert list(molecular.columns) == MOLECULAR_COLUMNS
    assert list(target.columns) == TARGET_COLUMNS
    assert clinical["ID"].is_unique and list(target["ID"]) == list(clinical["ID"])
    assert set(molecular["ID"]) <= set(clinical["ID"])
    assert molecular["VAF"].between(0, 1).all()
    assert set(target["OS_STATUS"]) == {0, 1} and (target["OS_YEARS"] > 0).all()
    effects = set(molecular["EFFECT"])
    assert {"ITD", "PTD", "frameshift_variant", "non_synonymous_codon"} <= effects


def test_tables_pass_the_schema_validators(cohort):
    from hemotwin.prognosis.tables import validate_clinical, validate_molecular, validate_target

    c = validate_clinical(cohort.clinical)
    validate_molecular(cohort.molecular)
    t = validate_target(cohort.target)
    assert len(c) == len(t) == 2000


def test_gene_frequencies_in_published_ranges(cohort):
    # n = 2000: the binomial SE of a 20 % frequency is 0.9 %; the bands below are the brief's
    # ranges widened by ~3 SE so that they test the generator, not the seed.
    freq = cohort.molecular.groupby("GENE")["ID"].nunique() / 2000
    bands = {"SF3B1": (0.15, 0.26), "ASXL1": (0.16, 0.28), "TET2": (0.19, 0.31), "SRSF2": (0.10, 0.20),
             "DNMT3A": (0.10, 0.20), "RUNX1": (0.06, 0.14), "TP53": (0.05, 0.15), "NPM1": (0.003, 0.04),
             "FLT3": (0.002, 0.04)}
    for gene, (lo, hi) in bands.items():
        assert lo <= freq.get(gene, 0.0) <= hi, (gene, freq.get(gene))
    # splicing factors are mutually exclusive
    spl = cohort.molecular[cohort.molecular["GENE"].isin(["SF3B1", "SRSF2", "U2AF1"])]
    assert spl.groupby("ID")["GENE"].nunique().max() == 1


def test_tp53_vaf_higher_and_multihit_structure(cohort):
    mol = cohort.molecular
    # TP53 clones are larger (LOH pushes VAF above 0.5); 311 TP53 rows give a mean with SE ~0.012
    tp53_max = mol[mol.GENE == "TP53"].groupby("ID")["VAF"].max()
    assert tp53_max.mean() > mol.loc[mol.GENE != "TP53", "VAF"].mean() + 0.1
    truth = cohort.truth
    multi = truth.loc[truth.TP53_MUTATED, "TP53_MULTIHIT"].mean()
    assert 0.5 <= multi <= 0.85  # about two thirds of TP53-mutated MDS are multi-hit (Bernard 2020)
    assert truth.loc[truth.TP53_MULTIHIT == 1, "COMPLEX"].mean() > 4 * truth.loc[truth.TP53_MULTIHIT == 0,
                                                                                  "COMPLEX"].mean()


def test_karyotype_mix(cohort):
    truth_normal = cohort.truth["KARYOTYPE_TRUE"].str.fullmatch(r"46,X[XY]\[20\]").mean()
    assert 0.48 <= truth_normal <= 0.62
    cyto = cohort.clinical["CYTOGENETICS"]
    assert cyto.isna().any() or (cyto.fillna("").str.strip() == "").any()
    assert cyto.dropna().str.contains(r"^46, ?x[xy]", regex=True).any()  # lower case, stray spaces
    assert cyto.dropna().str.contains("del(5)(q13q33)", regex=False).any()
    assert cyto.dropna().str.fullmatch("(?i)complex.*").any()


def test_centers_differ_in_case_mix_and_follow_up(cohort):
    d = cohort.clinical.assign(T=cohort.target.OS_YEARS, S=cohort.target.OS_STATUS, AGE=cohort.truth.AGE)
    per = d.groupby("CENTER").agg(fu=("T", "max"), age=("AGE", "mean"), n=("ID", "size"))
    assert len(per) == 5 and per["n"].min() > 50
    assert per["fu"].max() - per["fu"].min() > 1.0  # follow-up windows differ by years
    assert per["age"].max() - per["age"].min() > 2.0
    # planted heterogeneity of blasts across centers: Kruskal-Wallis far beyond chance
    groups = [g["BM_BLAST"].dropna().to_numpy() for _, g in d.groupby("CENTER")]
    assert stats.kruskal(*groups).pvalue < 1e-3


def test_event_times_follow_the_planted_weibull_model(cohort):
    # Probability integral transform: U = S(T | x) of the true event time is Uniform(0, 1) exactly
    # when T was drawn from the stated model; KS at n = 2000 detects a 4 % shift at alpha = 1e-3.
    md = cohort.metadata["baseline"]
    t = cohort.truth
    u = np.exp(-md["scale_lambda"] * np.exp(t["LP"]) * t["T_EVENT"] ** md["shape"])
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    # the observed outcome is the minimum of event and the independent censoring times
    obs = np.minimum.reduce([t.T_EVENT, t.T_ADMIN, t.T_LOSS])
    assert np.allclose(cohort.target.OS_YEARS, np.maximum(obs, 1 / 365.25), atol=2 / 365.25)
    assert 0.35 < cohort.target.OS_STATUS.mean() < 0.8


def test_effects_are_stored_and_overridable():
    c = simulate_cohort(100, n_centers=2, seed=0, effects={"TP53_MULTIHIT": 2.0})
    assert c.metadata["planted_log_hr"]["TP53_MULTIHIT"] == 2.0
    assert c.metadata["planted_log_hr"]["SF3B1"] == SurvivalEffects().SF3B1 < 0


@pytest.mark.parametrize("kw", [{"n": 1}, {"n": 10, "n_centers": 0}, {"n": 10, "missing_counts": 2.0}])
def test_bad_configuration_is_an_input_error(kw):
    n = kw.pop("n")
    with pytest.raises(InputError):
        simulate_cohort(n, seed=0, **kw)


def test_write_cohort_refuses_overwrite(tmp_path):
    c = simulate_cohort(50, n_centers=2, seed=1)
    paths = write_cohort(c, tmp_path / "out")
    assert pd.read_csv(paths["clinical"]).shape[0] == 50
    with pytest.raises(OutputExistsError):
        write_cohort(c, tmp_path / "out")
    write_cohort(c, tmp_path / "out", overwrite=True)
