"""Counting statistics: exact intervals (docs/clinical_rules.md §2), denominators, cells needed, corrected intervals."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from hemotwin.diagnosis.correction import ChainCalibration, corrected_estimate, sample_posterior
from hemotwin.diagnosis.differential import (
    LEUKOCYTE_CODES,
    additional_cells_needed,
    clopper_pearson,
    count_differential,
    cp_estimate,
)
from hemotwin.errors import InputError
from hemotwin.taxonomy import CLASS_CODES

# docs/clinical_rules.md §2: observed % -> {n: (lo, hi)} in percent, printed to 0.1.
RUMKE = {
    5: {100: (1.6, 11.3), 200: (2.4, 9.0), 500: (3.3, 7.3), 1000: (3.7, 6.5)},
    10: {100: (4.9, 17.6), 200: (6.2, 15.0), 500: (7.5, 13.0), 1000: (8.2, 12.0)},
    20: {100: (12.7, 29.2), 200: (14.7, 26.2), 500: (16.6, 23.8), 1000: (17.6, 22.6)},
}


@pytest.mark.parametrize("pct", sorted(RUMKE))
@pytest.mark.parametrize("n", [100, 200, 500, 1000])
def test_clopper_pearson_reproduces_the_clinical_rules_table(pct, n):
    lo, hi = clopper_pearson(pct * n // 100, n)
    exp_lo, exp_hi = RUMKE[pct][n]
    # The table prints one decimal: the exact bounds must round to it (half a unit of the last digit).
    assert abs(100 * lo - exp_lo) <= 0.05 + 1e-9
    assert abs(100 * hi - exp_hi) <= 0.05 + 1e-9


def test_true_22_percent_reads_below_20_as_stated():
    # docs/clinical_rules.md §2: about 28 % / 22 % / 13 % of 100 / 200 / 500-cell counts read < 20 %.
    for n, expected in ((100, 0.28), (200, 0.22), (500, 0.13)):
        p_below = binom.cdf(int(np.ceil(0.2 * n)) - 1, n, 0.22)
        assert abs(p_below - expected) < 0.02  # "about": the text rounds to whole percent


@pytest.mark.parametrize("n,p", [(100, 0.05), (200, 0.2), (500, 0.1)])
def test_exact_interval_covers_at_least_95_percent(n, p):
    # Exact coverage: sum of binomial probabilities of the counts whose interval holds p.
    xs = np.arange(n + 1)
    covered = [clopper_pearson(int(x), n)[0] <= p <= clopper_pearson(int(x), n)[1] for x in xs]
    assert binom.pmf(xs, n, p)[covered].sum() >= 0.95


def test_edges_and_bad_input():
    assert clopper_pearson(0, 50)[0] == 0.0
    assert clopper_pearson(50, 50)[1] == 1.0
    assert clopper_pearson(0, 0) == (0.0, 1.0)
    with pytest.raises(InputError):
        clopper_pearson(5, 3)
    with pytest.raises(InputError):
        count_differential({"XYZ": 3})
    with pytest.raises(InputError):
        count_differential(["NGS"], n_referred=-1)


def test_differential_denominator_excludes_nrbc_and_smudge_cells():
    d = count_differential({"MYO": 40, "NGS": 150, "LYT": 10, "EBO": 8, "KSC": 12}, n_referred=7)
    assert d.n_leukocytes == 200 and d.n_counted == 220 and d.n_referred == 7
    assert [r.code for r in d.rows] == list(CLASS_CODES)  # every class, zero rows included
    assert d.blasts.percent == pytest.approx(20.0)
    ebo = next(r for r in d.rows if r.code == "EBO").estimate
    assert ebo.per_100 and ebo.percent == pytest.approx(100 * 8 / 200)
    # The per-100 interval is the exact interval of 8 / 208 mapped through q / (1 - q).
    lo, hi = clopper_pearson(8, 208)
    assert ebo.lo == pytest.approx(100 * lo / (1 - lo)) and ebo.hi == pytest.approx(100 * hi / (1 - hi))
    assert sum(r.estimate.percent for r in d.rows if r.code in LEUKOCYTE_CODES) == pytest.approx(100.0)


def test_blast_equivalents_join_the_blasts():
    d = count_differential({"MYO": 5, "PMO": 30, "PMB": 10, "NGS": 55}, blast_equivalents=("PMO", "PMB"))
    assert d.blasts.percent == pytest.approx(5.0)
    assert d.blasts_with_equivalents.percent == pytest.approx(45.0)
    assert d.blast_equivalent_codes == ("PMO", "PMB")


def test_labels_as_a_list_equal_counts():
    a = count_differential(["NGS", "NGS", "MYO", "LYT"])
    b = count_differential({"NGS": 2, "MYO": 1, "LYT": 1})
    assert a.counts() == b.counts()


@pytest.mark.parametrize("x,n,t", [(44, 200, 20.0), (30, 200, 20.0), (24, 200, 10.0), (3, 100, 5.0)])
def test_additional_cells_decide_exactly_at_the_answer(x, n, t):
    extra = additional_cells_needed(x, n, t)
    assert extra is not None and extra > 0
    p = x / n

    def decided(total):
        lo, hi = clopper_pearson(p * total, total)
        return lo >= t / 100 or hi < t / 100

    assert decided(n + extra) and not decided(n + extra - 1)


def test_additional_cells_zero_when_decided_and_none_on_the_threshold():
    assert additional_cells_needed(90, 200, 20.0) == 0
    assert additional_cells_needed(40, 200, 20.0) is None  # exactly 20 %: no count decides it
    assert additional_cells_needed(0, 0, 20.0) is None


def _calibration(conf: np.ndarray, detected=None) -> ChainCalibration:
    return ChainCalibration(model_sha256="0" * 64, profile="test", um_per_px=0.1, call_labels=list(CLASS_CODES),
                            confusion=conf.astype(int).tolist(), detected=detected or [1000] * 15, missed=[0] * 15)


@pytest.mark.parametrize("cut", [False, True])
def test_corrected_interval_equals_clopper_pearson_for_a_perfect_classifier(cut):
    m = np.zeros((16, 15))
    m[:15] = 5000 * np.eye(15)
    post = sample_posterior({"MYO": 40, "NGS": 150, "LYT": 10}, _calibration(m), n_draws=4000, seed=1, cut=cut)
    e = corrected_estimate(post, ("MYO", "MOB"))
    cp = cp_estimate({"MYO": 40, "NGS": 150, "LYT": 10}, ("MYO", "MOB"))
    # Monte-Carlo quantiles of 4000 beta draws: within 0.6 percentage points of the exact bounds
    # (the 2.5 % quantile's standard error is about 0.2 points here).
    assert abs(e.lo - cp.lo) < 0.6 and abs(e.hi - cp.hi) < 0.6
    assert e.method == "misclassification-corrected"


@pytest.mark.parametrize("cut", [False, True])
def test_corrected_interval_covers_where_the_plain_one_does_not(cut):
    # A 70 % classifier that confuses every class uniformly: calls shrink blasts toward 1/15.
    rng = np.random.default_rng(0)
    c = np.full((16, 15), 0.3 / 14)
    np.fill_diagonal(c[:15], 0.7)
    c[15] = 1 / 15
    cal = _calibration(np.array([rng.multinomial(150, row) for row in c]))
    truth = {"MYO": 0.3, "NGS": 0.45, "LYT": 0.25}
    covered = plain_covered = 0
    reps = 30
    for r in range(reps):
        labels = rng.choice(list(truth), size=200, p=list(truth.values()))
        calls: dict[str, int] = {}
        for lab in labels:
            j = CLASS_CODES[rng.choice(15, p=c[CLASS_CODES.index(lab)])]
            calls[j] = calls.get(j, 0) + 1
        post = sample_posterior(calls, cal, n_draws=600, burn_in=200, seed=r, cut=cut)
        e = corrected_estimate(post, ("MYO", "MOB"))
        covered += e.lo <= 30.0 <= e.hi
        p = cp_estimate(calls, ("MYO", "MOB"))
        plain_covered += p.lo <= 30.0 <= p.hi
    # 30 repeats: a 95 % interval misses more than 4 times with probability < 6 %; the plain interval
    # on calls is biased (expected called fraction 0.7*0.3 + 0.3/14*0.7 = 22.5 %, not 30 %).
    assert covered >= reps - 4
    assert plain_covered < covered


def test_cut_posterior_keeps_a_rare_class_that_the_joint_one_explains_away():
    # A 96 %-accurate chain calibrated on 80 cells per class (the size the first shipped calibrations
    # had) and a sample where 8 of 200 cells are called EBO (4 per 100: nucleated red cells present).
    # In the joint model the sample's 192 other cells update the confusion rows as much as the
    # calibration does, so draws in which every EBO call is a misread neighbour are common and pull
    # the interval's lower bound to 0; with the confusion cut from the sample, only the calibration
    # says how often a neighbour is misread as EBO. Measured over three calibration draws: joint
    # 0.18-0.33 of draws at zero, cut 0.02-0.06; the bounds below leave a factor ~2 of slack.
    zero = {False: [], True: []}
    for s in range(3):
        rng = np.random.default_rng(s)
        c = np.full((16, 15), 0.04 / 14)
        np.fill_diagonal(c[:15], 0.96)
        c[15] = 1 / 15
        cal = _calibration(np.array([rng.multinomial(80, row) for row in c]))
        calls = {"EBO": 8, "NGS": 100, "LYT": 60, "MYO": 24, "MON": 8}
        for cut in (False, True):
            z = sample_posterior(calls, cal, n_draws=1500, seed=2, cut=cut).latent[:, CLASS_CODES.index("EBO")]
            zero[cut].append(np.mean(z < 0.5))
    assert np.mean(zero[True]) < 0.1
    assert np.mean(zero[True]) < np.mean(zero[False]) / 3


def test_discounted_calibration_widens_the_interval_and_rejects_bad_weights():
    # Counting the calibration as half as many cells (power prior 0.5) leaves the confusion rows
    # less certain, so the corrected interval of a 90 % classifier can only widen; the point
    # estimate barely moves (same confusion proportions). 1 point of slack on the centre covers the
    # Monte-Carlo noise of 2000 draws.
    rng = np.random.default_rng(4)
    c = np.full((16, 15), 0.1 / 14)
    np.fill_diagonal(c[:15], 0.9)
    c[15] = 1 / 15
    cal = _calibration(np.array([rng.multinomial(300, row) for row in c]))
    calls = {"MYO": 40, "NGS": 100, "LYT": 50, "MON": 10}
    full = corrected_estimate(sample_posterior(calls, cal, seed=1), ("MYO", "MOB"))
    half = corrected_estimate(sample_posterior(calls, cal, seed=1, calibration_weight=0.5), ("MYO", "MOB"))
    assert half.hi - half.lo > full.hi - full.lo
    assert abs(half.percent - full.percent) < 1.0
    with pytest.raises(InputError, match="calibration_weight"):
        sample_posterior(calls, cal, calibration_weight=0.0)


def test_a_few_blast_calls_beside_misread_neighbours_are_not_collapsed_to_zero():
    # 11 of 500 cells called blasts, while 12 % of lymphocytes and promyelocytes are called blasts
    # (as at the lower-resolution presets). The moment estimate is 11 - 0.12 x (35 + 15) = 5 true
    # blasts, 1.0 %. Under the sparse prior alpha = 0.1 (the default until 2026-11-29) the posterior
    # collapsed onto "no blasts" (median 0.0 with every seed tried), which is how a true 2 % was
    # excluded in up to a fifth of 500-cell CML-like samples; the Jeffreys prior keeps the median at
    # 0.8 % (seeds 0-2), so 0.5 points of slack around the moment estimate.
    m = np.zeros((16, 15))
    m[:15] = 300 * np.eye(15)
    i = CLASS_CODES.index
    for src in ("LYT", "PMO"):
        m[i(src), i(src)], m[i(src), i("MYO")] = 264, 36
    calls = {"MYO": 11, "LYT": 31, "PMO": 13, "NGS": 250, "MYB": 90, "NGB": 60, "BAS": 30, "EOS": 15}
    e = corrected_estimate(sample_posterior(calls, _calibration(m), seed=0), ("MYO", "MOB"))
    assert abs(e.percent - 1.0) < 0.5
    assert e.lo == 0.0 < 2.0 < e.hi  # a true 2 % and a true 0 % both lie inside
    sparse = corrected_estimate(sample_posterior(calls, _calibration(m), seed=0, alpha=0.1), ("MYO", "MOB"))
    assert sparse.percent < e.percent and sparse.hi < e.hi
