"""Survival models, metrics and cross-validation against known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone

from hemotwin.errors import InputError
from hemotwin.prognosis.design import align_cohort, build_design, fit_design, karyotype_matrix
from hemotwin.prognosis.survival import (
    PenalizedCox,
    PublishedScore,
    SurvivalBoosting,
    SurvivalForest,
    calibration_table,
    cox_information,
    cross_validate,
    harrell_c,
    make_folds,
    make_y,
    uno_c,
)
from hemotwin.prognosis.synthetic import DESIGN_COLUMN_OF, simulate_cohort


@pytest.fixture(scope="module")
def small():
    """600 synthetic patients in 4 centers, design matrix built from the tables (not the truth)."""
    c = simulate_cohort(600, n_centers=4, seed=5)
    cl, mo, ta, _ = align_cohort(c.clinical, c.molecular, c.target)
    X = build_design(fit_design(cl, mo), cl, mo)
    return c, X.reset_index(drop=True), make_y(ta), cl["CENTER"].to_numpy()


def _y(time, event):
    return make_y(event=np.asarray(event), time=np.asarray(time, float))


# --- metrics -------------------------------------------------------------------------------------

def test_concordance_of_perfect_and_reversed_risk():
    rng = np.random.default_rng(0)
    t = rng.permutation(np.linspace(0.1, 6.0, 200))
    e = rng.random(200) < 0.7
    y = _y(t, e)
    assert harrell_c(y, -t) == pytest.approx(1.0)
    assert harrell_c(y, t) == pytest.approx(0.0)
    c, tau = uno_c(y, y, -t, tau=7.0)
    assert c == pytest.approx(1.0) and tau <= 6.0  # tau lowered to the follow-up actually observed
    assert uno_c(y, y, t, tau=7.0)[0] == pytest.approx(0.0)


def test_ipcw_c_of_random_scores_is_one_half():
    # For a score independent of outcome, E[C] = 1/2. With n = 1000 (~650 events) the SD of Uno's C
    # measured over many random scores is about 0.012, so +-0.05 (~4 SD) per score and +-0.01 for
    # the mean of 20 scores (SD ~0.003) fail only if the estimator is biased.
    rng = np.random.default_rng(1)
    t = rng.weibull(1.2, 1000) * 3
    cens = rng.uniform(0.5, 9, 1000)
    y = _y(np.minimum(t, cens), t <= cens)
    cs = np.array([uno_c(y, y, rng.standard_normal(1000), tau=7.0)[0] for _ in range(20)])
    assert np.all(np.abs(cs - 0.5) < 0.05)
    assert abs(cs.mean() - 0.5) < 0.01


def test_uno_c_when_test_follow_up_exceeds_training():
    rng = np.random.default_rng(2)
    t_tr = rng.uniform(0.1, 3.0, 300)
    y_tr = _y(t_tr, rng.random(300) < 0.5)
    t_te = rng.uniform(0.1, 9.0, 200)
    risk = -t_te + rng.normal(0, 0.5, 200)
    y_te = _y(t_te, rng.random(200) < 0.6)
    c, tau = uno_c(y_tr, y_te, risk, tau=7.0)  # sksurv alone raises: G is undefined beyond 3 y
    assert tau < 3.0 and 0.8 < c <= 1.0


def test_calibration_of_the_true_model_is_close():
    # The true survival function of the planted model must agree with Kaplan-Meier per quintile:
    # with ~400 patients per quintile the KM SE at 1-3 y is <= 0.025, so 0.05 is 2 SE.
    c = simulate_cohort(2000, n_centers=3, seed=9)
    md, tr = c.metadata["baseline"], c.truth
    s = {h: np.exp(-md["scale_lambda"] * np.exp(tr["LP"]) * h ** md["shape"]) for h in (1.0, 3.0)}
    tab = calibration_table(make_y(c.target), s)
    assert (tab["predicted"] - tab["observed"]).abs().max() < 0.05


def test_cox_information_matches_scikit_survival_hessian(small):
    from sksurv.linear_model.coxph import CoxPHOptimizer

    _, X, y, _ = small
    rng = np.random.default_rng(0)
    Z = np.nan_to_num(X[["BM_BLAST", "HB", "AGE", "MUT_SF3B1"]].to_numpy(float))
    Z = (Z - Z.mean(0)) / Z.std(0)
    beta = rng.normal(0, 0.2, 4)
    opt = CoxPHOptimizer(Z, y["event"], y["time"], np.zeros(4), "breslow")
    opt.update(beta)
    np.testing.assert_allclose(cox_information(Z, y["event"], y["time"], beta), opt.hessian * len(y), rtol=1e-9)


# --- models --------------------------------------------------------------------------------------

def test_cox_recovers_planted_effects(small):
    c, X, y, _ = small
    cols = list(DESIGN_COLUMN_OF.values())
    model = PenalizedCox(alpha=0.01).fit(X[cols], y)
    co = model.coefficients(X[cols])
    truth = pd.Series(c.metadata["planted_log_hr"]).rename(DESIGN_COLUMN_OF)
    z = (co["coef"] - truth) / co["se"]
    # Every estimate within 3.5 Wald SE of the planted value (9 coefficients: family-wise false
    # alarm < 0.5 %); the SE also absorbs the attenuation of karyotypes written as free text.
    assert (z.abs() < 3.5).all(), z
    # and the sign is right wherever the planted effect is > 3 SE away from zero
    strong = truth.abs() > 3 * co["se"]
    assert strong.sum() >= 5
    assert (np.sign(co["coef"][strong]) == np.sign(truth[strong])).all()


def test_models_accept_nan_do_not_mutate_and_clone(small):
    _, X, y, _ = small
    X0 = X.copy()
    assert X.isna().any().any()
    for m in (PenalizedCox(), SurvivalForest(n_estimators=15, min_samples_leaf=10),
              SurvivalBoosting(n_estimators=30)):
        m2 = clone(m).fit(X.iloc[:450], y[:450])
        r = m2.predict(X.iloc[450:])
        assert r.shape == (150,) and np.isfinite(r).all()
        s = m2.predict_survival(X.iloc[450:], [0.0, 1.0, 3.0, 5.0, 50.0])
        assert s.shape == (150, 5) and (np.diff(s, axis=1) <= 1e-12).all() and s.min() >= 0 and s.max() <= 1
        assert harrell_c(y[450:], r) > 0.6  # informative on held-out patients
    pd.testing.assert_frame_equal(X, X0)


def test_predict_requires_training_columns(small):
    _, X, y, _ = small
    m = PenalizedCox().fit(X, y)
    with pytest.raises(InputError, match="trained on"):
        m.predict(X.drop(columns=["HB"]))


def test_published_score_ranks_categories():
    df = pd.DataFrame({"ELN2022": ["Favorable", "adverse", "Intermediate", None, "ADVERSE"]})
    ps = PublishedScore("ELN2022").fit(df)
    np.testing.assert_array_equal(ps.predict(df), [0, 2, 1, 1.5, 2])  # missing -> training median of 0,2,1,2
    num = pd.DataFrame({"IPSSM_SCORE": [-1.0, 0.5, np.nan]})
    np.testing.assert_array_equal(PublishedScore("IPSSM_SCORE").fit(num).predict(num), [-1.0, 0.5, -0.25])


def test_make_y_rejects_bad_outcomes():
    with pytest.raises(InputError, match="OS_STATUS"):
        make_y(pd.DataFrame({"OS_YEARS": [1.0, 2.0], "OS_STATUS": [1, 2]}))
    with pytest.raises(InputError, match="OS_YEARS"):
        make_y(pd.DataFrame({"OS_YEARS": [1.0, -2.0], "OS_STATUS": [1, 0]}))
    with pytest.raises(InputError, match="OS_YEARS"):
        make_y(pd.DataFrame({"OS_STATUS": [1, 0]}))


# --- cross-validation ----------------------------------------------------------------------------

def test_leave_centers_out_never_splits_a_center():
    groups = np.repeat(["A", "B", "C", "D"], [30, 10, 25, 5])
    folds = make_folds(len(groups), groups=groups, cv="centers")
    assert len(folds) == 4
    seen = []
    for tr, te in folds:
        assert not set(groups[tr]) & set(groups[te])
        assert len(set(groups[te])) == 1
        seen.append(groups[te][0])
    assert sorted(seen) == ["A", "B", "C", "D"]
    with pytest.raises(InputError):
        make_folds(10, groups=["A"] * 10, cv="centers")


def test_cross_validate_scores_everyone_on_the_same_folds(small):
    c, X, y, centers = small
    scores = pd.DataFrame({"TRUE_LP": c.truth["LP"].to_numpy(), "NOISE": np.random.default_rng(0).normal(size=600)})
    res = cross_validate({"cox": PenalizedCox(), "gbsa": SurvivalBoosting(n_estimators=20)}, X, y,
                         groups=centers, baselines=scores, baseline_columns=["TRUE_LP", "NOISE"])
    f = res.folds
    assert set(f["model"]) == {"cox", "gbsa", "TRUE_LP", "NOISE"}
    per_fold = f.groupby("fold").agg(n=("n_test", "nunique"), c=("test_centers", "nunique"), m=("model", "size"))
    assert (per_fold["n"] == 1).all() and (per_fold["c"] == 1).all() and (per_fold["m"] == 4).all()
    for d in res.fold_definition:
        assert not set(d["test_centers"]) & set(d["train_centers"])
    s = res.summary
    # the true linear predictor is the best possible risk; a fitted model cannot beat it by more
    # than fold noise, and pure noise sits near 0.5 (SE of C per ~150-patient fold ~0.03)
    assert s.loc["TRUE_LP", "uno_c_median"] > s.loc["cox", "uno_c_median"] - 0.02
    assert s.loc["cox", "uno_c_median"] > 0.6
    assert abs(s.loc["NOISE", "uno_c_median"] - 0.5) < 0.08
    assert res.oof_risk.notna().all().all()
    assert {"cox", "gbsa"} == set(res.calibration["model"])


def test_kfold_option(small):
    _, X, y, _ = small
    res = cross_validate({"cox": PenalizedCox()}, X, y, cv="kfold", n_splits=3, seed=1)
    assert len(res.folds) == 3 and res.folds["n_test"].sum() == 600


def test_karyotype_matrix_reads_lower_case_and_blanks():
    k = karyotype_matrix(["46,XY[20]", "45,xy,-7[20]", "", None, "complex"])
    assert k.loc[0, "KARYO_NORMAL"] == 1 and k.loc[1, "MINUS7"] == 1
    assert np.isnan(k.loc[2, "COMPLEX"]) and np.isnan(k.loc[3, "COMPLEX"])
