"""Survival models for cohort tables: penalised Cox, random survival forest, gradient boosting.

Every model is a scikit-learn estimator (``fit(X, y)`` / ``predict(X)`` / ``get_params``) wrapping a
scikit-survival estimator behind the same preprocessing (median imputation, removal of constant
columns, standardisation), so that a design matrix with missing counts can be used as is. ``y`` is
the structured ``(event, time)`` array of :func:`sksurv.util.Surv`; :func:`make_y` builds it from a
target table. ``predict`` returns a *risk* (higher = worse) as scikit-survival does.

Evaluation follows docs/clinical_rules.md §8: Harrell's C, Uno's IPCW C truncated at 7 years, the
integrated Brier score on a time grid inside the test follow-up, calibration at 1/3/5 years, and
**leave-centers-out** cross-validation by default, with the published scores (IPSS-M, IPSS-R, ELN
2022) wrapped as :class:`PublishedScore` and scored on exactly the same folds.

For research use only.
"""

from __future__ import annotations

import time as _time
from abc import ABCMeta, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone
from sklearn.feature_selection import VarianceThreshold
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, LeaveOneGroupOut
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from hemotwin.errors import InputError

__all__ = [
    "CVResult",
    "PenalizedCox",
    "PublishedScore",
    "SurvivalBoosting",
    "SurvivalForest",
    "calibration_table",
    "cox_information",
    "cross_validate",
    "evaluate_risk",
    "harrell_c",
    "integrated_brier",
    "km_at",
    "load_model",
    "make_folds",
    "make_model",
    "make_y",
    "risk_groups",
    "save_model",
    "uno_c",
]

MODEL_KINDS = ("cox", "rsf", "gbsa")
DEFAULT_TAU_YEARS = 7.0
CALIBRATION_HORIZONS = (1.0, 3.0, 5.0)


# --------------------------------------------------------------------------------------------------
# Outcome
# --------------------------------------------------------------------------------------------------

def make_y(target: pd.DataFrame | None = None, *, event: Any = None, time: Any = None,
           where: str = "target") -> np.ndarray:
    """Structured ``(event, time)`` array from a §9 target table (``OS_STATUS``, ``OS_YEARS``) or arrays.

    Raises :class:`~hemotwin.errors.InputError` on missing, negative or non-binary values.
    """
    from sksurv.util import Surv

    if target is not None:
        missing = [c for c in ("OS_YEARS", "OS_STATUS") if c not in target.columns]
        if missing:
            raise InputError(where, list(target.columns), f"columns OS_YEARS and OS_STATUS (missing {missing})")
        event, time = target["OS_STATUS"], target["OS_YEARS"]
    ev = pd.to_numeric(pd.Series(np.asarray(event)), errors="coerce")
    tm = pd.to_numeric(pd.Series(np.asarray(time)), errors="coerce")
    if ev.isna().any() or not ev.isin([0, 1]).all():
        bad = ev[ev.isna() | ~ev.isin([0, 1])].iloc[0]
        raise InputError(f"{where}.OS_STATUS", bad, "1 (death) or 0 (censored), no blanks")
    if tm.isna().any() or (tm < 0).any() or not np.isfinite(tm).all():
        bad = tm[tm.isna() | (tm < 0) | ~np.isfinite(tm)].iloc[0]
        raise InputError(f"{where}.OS_YEARS", bad, "a follow-up time in years >= 0, no blanks")
    if ev.sum() == 0:
        raise InputError(f"{where}.OS_STATUS", "all 0", "at least one death to fit or evaluate survival")
    return Surv.from_arrays(event=ev.to_numpy(bool), time=tm.to_numpy(float), name_event="event", name_time="time")


def _ev_t(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    names = y.dtype.names
    return np.asarray(y[names[0]], bool), np.asarray(y[names[1]], float)


# --------------------------------------------------------------------------------------------------
# Estimators
# --------------------------------------------------------------------------------------------------

class _PipelineSurvival(BaseEstimator, metaclass=ABCMeta):
    """Shared fit/predict: impute -> drop constant columns -> scale -> scikit-survival estimator."""

    @abstractmethod
    def _make_estimator(self):
        """The unfitted scikit-survival estimator of this model (each subclass builds its own)."""

    def fit(self, X: pd.DataFrame | np.ndarray, y: np.ndarray) -> _PipelineSurvival:
        """Fit on a design matrix (NaN allowed) and a structured ``(event, time)`` array."""
        Xf = self._as_frame(X, fitting=True)
        if Xf.shape[0] != len(y):
            raise InputError("y", len(y), f"{Xf.shape[0]} outcomes, one per row of X")
        # keep_empty_features: an all-missing column becomes constant and is then dropped by the
        # variance filter, instead of silently shifting every later column.
        self.pipeline_ = Pipeline([
            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
            ("drop_constant", VarianceThreshold(0.0)),
            ("scale", StandardScaler()),
            ("model", self._make_estimator()),
        ])
        t0 = _time.perf_counter()
        self.pipeline_.fit(Xf.to_numpy(float), y)
        self.fit_seconds_ = _time.perf_counter() - t0
        kept = self.pipeline_.named_steps["drop_constant"].get_support()
        self.features_used_ = [f for f, k in zip(self.feature_names_in_, kept, strict=True) if k]
        return self

    def _as_frame(self, X: pd.DataFrame | np.ndarray, *, fitting: bool = False) -> pd.DataFrame:
        if isinstance(X, pd.DataFrame):
            Xf = X
        else:
            arr = np.asarray(X, dtype=float)
            if arr.ndim != 2:
                raise InputError("X", arr.shape, "a 2-D design matrix")
            cols = [f"x{i}" for i in range(arr.shape[1])] if fitting else list(self.feature_names_in_)
            if not fitting and arr.shape[1] != len(cols):
                raise InputError("X", arr.shape[1], f"{len(cols)} columns as in training")
            Xf = pd.DataFrame(arr, columns=cols)
        if fitting:
            self.feature_names_in_ = np.asarray([str(c) for c in Xf.columns], dtype=object)
            self.n_features_in_ = len(self.feature_names_in_)
            Xf = Xf.apply(pd.to_numeric, errors="coerce")
            return Xf
        missing = [c for c in self.feature_names_in_ if c not in Xf.columns]
        if missing:
            raise InputError("X", missing[:5], "the feature columns the model was trained on")
        return Xf[list(self.feature_names_in_)].apply(pd.to_numeric, errors="coerce")

    def predict(self, X: pd.DataFrame | np.ndarray) -> np.ndarray:
        """Risk score per row (higher = shorter expected survival)."""
        return np.asarray(self.pipeline_.predict(self._as_frame(X).to_numpy(float)), float)

    def predict_survival(self, X: pd.DataFrame | np.ndarray, times: Sequence[float] | np.ndarray) -> np.ndarray:
        """Predicted survival probability ``S(t | x)``, shape ``(n_rows, len(times))``.

        Step-function evaluation: 1 before the first training event time, the last value after the
        last one (scikit-survival's own step functions refuse times outside their domain).
        """
        pre = self.pipeline_[:-1].transform(self._as_frame(X).to_numpy(float))
        fns = self.pipeline_.named_steps["model"].predict_survival_function(pre)
        grid = np.asarray(fns[0].x, float)
        vals = np.vstack([np.asarray(f.y, float) for f in fns])
        t = np.atleast_1d(np.asarray(times, float))
        idx = np.searchsorted(grid, t, side="right") - 1
        out = np.where(idx[None, :] >= 0, vals[:, np.clip(idx, 0, None)], 1.0)
        return out

    def score(self, X: pd.DataFrame | np.ndarray, y: np.ndarray) -> float:
        """Harrell's concordance index on ``(X, y)`` (scikit-survival convention)."""
        return harrell_c(y, self.predict(X))


class PenalizedCox(_PipelineSurvival):
    """Cox proportional-hazards model with a ridge (``l1_ratio=0``) or elastic-net penalty.

    Parameters
    ----------
    alpha
        Penalty strength. With ``l1_ratio == 0`` it is scikit-survival's ``CoxPHSurvivalAnalysis``
        ridge ``alpha`` (penalty ``alpha/2 * ||beta||^2`` on the *total* log partial likelihood of
        standardised features, so a small alpha is nearly unpenalised for thousands of patients);
        otherwise ``CoxnetSurvivalAnalysis(alphas=[alpha])`` (per-patient scale).
    l1_ratio
        0 = ridge (exact Newton fit, standard errors available), > 0 = elastic net.
    ties
        ``"breslow"`` or ``"efron"`` (ridge only).
    """

    def __init__(self, alpha: float = 30.0, *, l1_ratio: float = 0.0, ties: str = "breslow") -> None:
        self.alpha = alpha
        self.l1_ratio = l1_ratio
        self.ties = ties

    def _make_estimator(self):
        from sksurv.linear_model import CoxnetSurvivalAnalysis, CoxPHSurvivalAnalysis

        if self.alpha < 0 or not 0 <= self.l1_ratio <= 1:
            raise InputError("PenalizedCox", (self.alpha, self.l1_ratio), "alpha >= 0 and 0 <= l1_ratio <= 1")
        if self.l1_ratio == 0:
            return CoxPHSurvivalAnalysis(alpha=self.alpha, ties=self.ties, n_iter=200)
        return CoxnetSurvivalAnalysis(alphas=[self.alpha], l1_ratio=self.l1_ratio, fit_baseline_model=True)

    def fit(self, X, y) -> PenalizedCox:
        """Fit the pipeline and keep ``y`` for :meth:`coefficients` (standard errors)."""
        super().fit(X, y)
        self._y_train = y  # kept for the standard errors (information matrix at the fit)
        return self

    def coefficients(self, X: pd.DataFrame | None = None) -> pd.DataFrame:
        """Log-hazard ratios per *original* unit of each feature, with standard errors.

        The fit is on standardised features; ``beta_original = beta_std / sd``. Standard errors come
        from the inverse of the penalised observed information (Breslow) at the estimate, which is the
        usual Wald approximation when the ridge penalty is small; for the elastic net they are not
        defined and are NaN. ``X`` must be the training design (it is not stored in the model).
        """
        model = self.pipeline_.named_steps["model"]
        scale = self.pipeline_.named_steps["scale"].scale_
        coef_std = np.ravel(model.coef_)
        se_std = np.full_like(coef_std, np.nan)
        if X is not None and self.l1_ratio == 0:
            Z = self.pipeline_[:-1].transform(self._as_frame(X).to_numpy(float))
            ev, tm = _ev_t(self._y_train)
            info = cox_information(Z, ev, tm, coef_std) + self.alpha * np.eye(Z.shape[1])
            se_std = np.sqrt(np.clip(np.diag(np.linalg.pinv(info)), 0, None))
        coef = coef_std / scale
        se = se_std / scale
        return pd.DataFrame({"feature": self.features_used_, "coef": coef, "se": se, "hr": np.exp(coef),
                             "hr_low": np.exp(coef - 1.96 * se), "hr_high": np.exp(coef + 1.96 * se),
                             "z": coef / se}).set_index("feature")


class SurvivalForest(_PipelineSurvival):
    """Random survival forest (``sksurv.ensemble.RandomSurvivalForest``) behind the shared preprocessing."""

    def __init__(self, n_estimators: int = 200, *, min_samples_leaf: int = 15, max_features: str | float = "sqrt",
                 max_depth: int | None = None, random_state: int = 0, n_jobs: int = 1) -> None:
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_depth = max_depth
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _make_estimator(self):
        from sksurv.ensemble import RandomSurvivalForest

        return RandomSurvivalForest(n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
                                    min_samples_split=2 * self.min_samples_leaf, max_features=self.max_features,
                                    max_depth=self.max_depth, random_state=self.random_state, n_jobs=self.n_jobs,
                                    low_memory=False)


class SurvivalBoosting(_PipelineSurvival):
    """Gradient-boosted regression trees on the Cox partial likelihood (``GradientBoostingSurvivalAnalysis``)."""

    def __init__(self, n_estimators: int = 200, *, learning_rate: float = 0.05, max_depth: int = 3,
                 subsample: float = 0.8, min_samples_leaf: int = 10, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.min_samples_leaf = min_samples_leaf
        self.random_state = random_state

    def _make_estimator(self):
        from sksurv.ensemble import GradientBoostingSurvivalAnalysis

        return GradientBoostingSurvivalAnalysis(loss="coxph", n_estimators=self.n_estimators,
                                                learning_rate=self.learning_rate, max_depth=self.max_depth,
                                                subsample=self.subsample, min_samples_leaf=self.min_samples_leaf,
                                                random_state=self.random_state)


def make_model(kind: str, *, seed: int = 0, **params: Any) -> _PipelineSurvival:
    """A model by its method name: ``cox`` (ridge Cox), ``rsf`` (random survival forest), ``gbsa`` (boosting)."""
    kind = kind.lower()
    if kind == "cox":
        return PenalizedCox(**params)
    if kind == "rsf":
        return SurvivalForest(random_state=seed, **params)
    if kind == "gbsa":
        return SurvivalBoosting(random_state=seed, **params)
    raise InputError("method", kind, f"one of {', '.join(MODEL_KINDS)}")


#: Ordinal codes of published risk categories (lower = better), matched case/punctuation-insensitively.
_CATEGORY_ORDER: dict[str, float] = {
    "favorable": 0, "favourable": 0, "intermediate": 1, "adverse": 2,                      # ELN 2022/2024
    "very low": 0, "low": 1, "moderate low": 2, "moderate high": 3, "high": 4, "very high": 5,  # IPSS-M
}
_IPSSR_ORDER = {"very low": 0, "low": 1, "intermediate": 2, "high": 3, "very high": 4}


class PublishedScore(BaseEstimator):
    """A published risk score used as a baseline "model": its value (or category rank) is the risk.

    ``fit`` learns nothing but the training median, used for patients whose score is missing (so the
    baseline is scored on every patient like the fitted models). Categories are ranked
    (ELN favorable < intermediate < adverse; IPSS-M very low < ... < very high; IPSS-R likewise).

    Parameters
    ----------
    column
        Column of the scores table: ``IPSSM_SCORE``, ``IPSSR_SCORE``, ``ELN2022``, ``IPSSM`` ...
    """

    def __init__(self, column: str = "IPSSM_SCORE") -> None:
        self.column = column

    def _values(self, X: pd.DataFrame) -> np.ndarray:
        if not isinstance(X, pd.DataFrame) or self.column not in X.columns:
            raise InputError("scores", self.column, "a column of the published-score table")
        s = X[self.column]
        num = pd.to_numeric(s, errors="coerce")
        if num.notna().sum() >= max(1, s.notna().sum() // 2):
            return num.to_numpy(float)
        order = _IPSSR_ORDER if self.column.upper().startswith("IPSSR") else _CATEGORY_ORDER
        key = s.astype("string").str.lower().str.replace(r"[_\-]+", " ", regex=True).str.strip()
        return key.map(order).astype(float).to_numpy()

    def fit(self, X: pd.DataFrame, y: np.ndarray | None = None) -> PublishedScore:
        """Learn the median score, which stands in for a patient the score could not rate."""
        v = self._values(X)
        self.fill_value_ = float(np.nanmedian(v)) if np.isfinite(v).any() else 0.0
        self.n_missing_fit_ = int(np.isnan(v).sum())
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The score as a risk (higher = worse), the training median where it is missing."""
        v = self._values(X)
        return np.where(np.isnan(v), self.fill_value_, v)


# --------------------------------------------------------------------------------------------------
# Cox information matrix (standard errors)
# --------------------------------------------------------------------------------------------------

def cox_information(X: np.ndarray, event: np.ndarray, time: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """Observed information (minus the Hessian) of the Breslow log partial likelihood at ``beta``.

    Vectorised without an ``n x p x p`` array: ``sum_i d_i S2(t_i)/S0(t_i)`` equals
    ``X' diag(r_j c_j) X`` with ``c_j = sum_{i: t_i <= t_j} d_i / S0(t_i)``.
    """
    X = np.asarray(X, float)
    o = np.argsort(time, kind="mergesort")
    Xs, ts, ds = X[o], np.asarray(time, float)[o], np.asarray(event, bool)[o]
    eta = Xs @ beta
    r = np.exp(eta - eta.max())  # common factor cancels in every ratio
    s0 = np.cumsum(r[::-1])[::-1]
    s1 = np.cumsum((r[:, None] * Xs)[::-1], axis=0)[::-1]
    first = np.searchsorted(ts, ts, side="left")  # start of each risk set (ties share it: Breslow)
    ev_idx = np.flatnonzero(ds)
    s0_e = s0[first[ev_idx]]
    m = s1[first[ev_idx]] / s0_e[:, None]
    inv = np.zeros(len(ts))
    np.add.at(inv, first[ev_idx], 1.0 / s0_e)  # event contributions keyed by risk-set start
    c = np.cumsum(inv)  # subject j is at risk at every event time <= t_j, i.e. risk-set starts <= j
    return (Xs * (r * c)[:, None]).T @ Xs - m.T @ m


# --------------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------------

def harrell_c(y: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's concordance index of a risk score (1 = perfectly ordered, 0.5 = random)."""
    from sksurv.metrics import concordance_index_censored

    ev, tm = _ev_t(y)
    return float(concordance_index_censored(ev, tm, np.asarray(risk, float))[0])


def _max_weightable_time(y_train: np.ndarray) -> float:
    """Largest time where the training censoring distribution G is still positive (IPCW is defined)."""
    from sksurv.nonparametric import CensoringDistributionEstimator

    cens = CensoringDistributionEstimator().fit(y_train)
    times, prob = cens.unique_time_[1:], cens.prob_[1:]
    positive = times[prob > 0]
    return float(positive.max()) if positive.size else float(_ev_t(y_train)[1].max())


def uno_c(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, *,
          tau: float | None = DEFAULT_TAU_YEARS) -> tuple[float, float]:
    """Uno's IPCW concordance truncated at ``tau``; returns ``(c, tau_used)``.

    ``concordance_index_ipcw`` needs the training censoring survival ``G`` to be positive up to the
    largest test event time counted. When ``tau`` lies beyond the training follow-up (or beyond the
    test follow-up, where truncating changes nothing) it is lowered to the last time where ``G > 0``
    and the lower value is reported: an honest smaller horizon rather than an error or a silent
    division by zero. Test times beyond that horizon enter only as "still alive" comparators.
    """
    from sksurv.metrics import concordance_index_ipcw

    ev, tm = _ev_t(y_test)
    limit = _max_weightable_time(y_train)
    tau_used = min(tau if tau is not None else np.inf, limit, float(tm.max()))
    # concordance_index_ipcw masks test_time < tau; G must be evaluable at those times (< limit).
    if tau_used >= limit:
        tau_used = float(np.nextafter(limit, -np.inf))
    y_t = y_test.copy()
    names = y_t.dtype.names
    # Times past the training horizon would make G undefined although they are excluded by tau;
    # clipping them (as censored) keeps the same comparable pairs below tau_used.
    late = tm > limit
    y_t[names[1]] = np.where(late, limit, tm)
    y_t[names[0]] = np.where(late, False, ev)
    c = concordance_index_ipcw(y_train, y_t, np.asarray(risk, float), tau=tau_used)[0]
    return float(c), float(tau_used)


def integrated_brier(y_train: np.ndarray, y_test: np.ndarray, surv_fn: Callable[[np.ndarray], np.ndarray], *,
                     tau: float | None = DEFAULT_TAU_YEARS, n_times: int = 30) -> tuple[float, np.ndarray]:
    """Integrated Brier score on a grid inside the test follow-up; returns ``(ibs, times)``.

    The grid runs from the 10th to the 90th percentile of the test follow-up times, cut at ``tau``
    and at the training horizon where IPCW weights exist, so that every grid time has patients at risk.
    ``surv_fn(times)`` returns the predicted survival of the test rows at ``times``.
    """
    from sksurv.metrics import integrated_brier_score

    ev, tm = _ev_t(y_test)
    limit = _max_weightable_time(y_train)
    lo, hi = np.percentile(tm, [10, 90])
    hi = min(hi, tau if tau is not None else np.inf, np.nextafter(limit, -np.inf))
    if not hi > lo:
        return float("nan"), np.array([])
    times = np.linspace(lo, hi, n_times)
    y_t = y_test.copy()
    names = y_t.dtype.names
    late = tm > limit
    y_t[names[1]] = np.where(late, limit, tm)
    y_t[names[0]] = np.where(late, False, ev)
    return float(integrated_brier_score(y_train, y_t, surv_fn(times), times)), times


def evaluate_risk(y_train: np.ndarray, y_test: np.ndarray, risk: np.ndarray, *,
                  tau: float | None = DEFAULT_TAU_YEARS) -> dict[str, float]:
    """Harrell C and Uno C (with the horizon actually used) of a risk score on a test set."""
    out: dict[str, float] = {"harrell_c": float("nan"), "uno_c": float("nan"), "tau_used": float("nan")}
    try:
        out["harrell_c"] = harrell_c(y_test, risk)
        out["uno_c"], out["tau_used"] = uno_c(y_train, y_test, risk, tau=tau)
    except (ValueError, ZeroDivisionError) as exc:  # e.g. no comparable pairs in a tiny fold
        out["note"] = str(exc)  # type: ignore[assignment]
    return out


def km_at(y: np.ndarray, t: float) -> float:
    """Kaplan-Meier survival at ``t`` (NaN when nobody is followed up to ``t``)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    ev, tm = _ev_t(y)
    if tm.size == 0 or tm.max() < t:
        return float("nan")
    x, s = kaplan_meier_estimator(ev, tm)
    i = np.searchsorted(x, t, side="right") - 1
    return 1.0 if i < 0 else float(s[i])


def calibration_table(y: np.ndarray, surv_at: Mapping[float, np.ndarray], *, n_groups: int = 5) -> pd.DataFrame:
    """Predicted vs Kaplan-Meier observed survival by group of predicted risk, at each horizon.

    Parameters
    ----------
    y
        Outcomes of the patients (pooled out-of-fold predictions in cross-validation).
    surv_at
        Horizon (years) -> predicted survival probability of each patient at that horizon.
    n_groups
        Quantile groups of predicted survival (5 = quintiles); group 1 is the highest risk.
    """
    rows = []
    for h, s in surv_at.items():
        s = np.asarray(s, float)
        ranks = pd.Series(s).rank(method="first").to_numpy()
        grp = np.ceil(ranks / len(s) * n_groups).astype(int).clip(1, n_groups)
        for g in range(1, n_groups + 1):
            m = grp == g
            rows.append({"horizon": float(h), "group": g, "n": int(m.sum()), "predicted": float(s[m].mean()),
                         "observed": km_at(y[m], h)})
    return pd.DataFrame(rows)


def risk_groups(risk_train: np.ndarray, risk: np.ndarray, *, n_groups: int = 4) -> np.ndarray:
    """Risk group 1..n_groups (n_groups = highest risk) from quantile cut-points of the *training* risks.

    Cut-points from the training fold keep held-out groups comparable across folds whose risk scales
    differ (a forest's cumulative hazard vs a Cox linear predictor).
    """
    cuts = np.unique(np.quantile(np.asarray(risk_train, float), np.linspace(0, 1, n_groups + 1)[1:-1]))
    return np.searchsorted(cuts, np.asarray(risk, float), side="right") + 1


# --------------------------------------------------------------------------------------------------
# Cross-validation
# --------------------------------------------------------------------------------------------------

def make_folds(n: int, *, groups: Sequence[Any] | None = None, cv: Literal["centers", "kfold"] = "centers",
               n_splits: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Train/test index pairs: one fold per center (``LeaveOneGroupOut``) or shuffled ``KFold``."""
    idx = np.arange(n)
    if cv == "centers":
        if groups is None:
            raise InputError("cv", cv, "a CENTER column for leave-centers-out validation")
        g = np.asarray(groups)
        if len(np.unique(g)) < 2:
            raise InputError("CENTER", np.unique(g).tolist(), "at least 2 centers for leave-centers-out "
                                                              "(k-fold cross-validation for a single center)")
        return list(LeaveOneGroupOut().split(idx, groups=g))
    if cv == "kfold":
        if not 2 <= n_splits <= n:
            raise InputError("folds", n_splits, f"between 2 and {n}")
        return list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(idx))
    raise InputError("cv", cv, "'centers' or 'kfold'")


@dataclass
class CVResult:
    """Per-fold metrics, their summary, and pooled out-of-fold predictions of every model and score."""

    folds: pd.DataFrame
    summary: pd.DataFrame
    oof_risk: pd.DataFrame
    oof_group: pd.DataFrame
    oof_surv: dict[str, pd.DataFrame] = field(default_factory=dict)
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    fold_definition: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: per-fold rows, summary per model, calibration rows and the fold definitions."""
        def clean(df: pd.DataFrame) -> list[dict[str, Any]]:
            return [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in r.items()}
                    for r in df.to_dict(orient="records")]

        return {"folds": clean(self.folds), "summary": clean(self.summary.reset_index()),
                "calibration": clean(self.calibration), "fold_definition": self.fold_definition}


def cross_validate(models: Mapping[str, BaseEstimator], X: pd.DataFrame, y: np.ndarray, *,
                   groups: Sequence[Any] | None = None, cv: Literal["centers", "kfold"] = "centers",
                   n_splits: int = 5, seed: int = 0, baselines: pd.DataFrame | None = None,
                   baseline_columns: Sequence[str] = (), tau: float | None = DEFAULT_TAU_YEARS,
                   horizons: Sequence[float] = CALIBRATION_HORIZONS,
                   progress: Callable[[int, int], None] | None = None) -> CVResult:
    """Score every model and every published score on the same folds.

    Parameters
    ----------
    models
        Name -> unfitted estimator (cloned for each fold; the originals are not touched).
    X, y
        Design matrix and structured outcome, row-aligned.
    groups
        Center of each row (required for ``cv="centers"``); also reported per fold.
    baselines, baseline_columns
        Published-score table row-aligned with ``X`` and the columns to score as :class:`PublishedScore`.
    tau
        Horizon of Uno's C and upper end of the Brier grid (years).
    horizons
        Calibration horizons (years) for models that predict survival functions.
    """
    n = len(y)
    if X.shape[0] != n or (baselines is not None and baselines.shape[0] != n):
        raise InputError("X", X.shape[0], f"{n} rows aligned with the outcome")
    folds = make_folds(n, groups=groups, cv=cv, n_splits=n_splits, seed=seed)
    g = np.asarray(groups) if groups is not None else np.full(n, "all")
    entries: list[tuple[str, BaseEstimator, pd.DataFrame]] = [(k, m, X) for k, m in models.items()]
    for col in baseline_columns:
        if baselines is None or col not in baselines.columns:
            raise InputError("baselines", col, "a column of the published-score table")
        entries.append((col, PublishedScore(col), baselines))
    oof_risk = pd.DataFrame(np.nan, index=range(n), columns=[e[0] for e in entries])
    oof_group = pd.DataFrame(0, index=range(n), columns=[e[0] for e in entries])
    oof_surv = {name: pd.DataFrame(np.nan, index=range(n), columns=list(horizons))
                for name, est, _ in entries if hasattr(est, "predict_survival")}
    rows, fold_def = [], []
    total, done = len(folds) * len(entries), 0
    for k, (tr, te) in enumerate(folds):
        fold_def.append({"fold": k, "test_centers": sorted(map(str, np.unique(g[te]))),
                         "train_centers": sorted(map(str, np.unique(g[tr]))), "n_train": len(tr), "n_test": len(te)})
        for name, est, data in entries:
            m = clone(est)
            t0 = _time.perf_counter()
            m.fit(data.iloc[tr], y[tr])
            fit_s = _time.perf_counter() - t0
            risk_tr, risk_te = m.predict(data.iloc[tr]), m.predict(data.iloc[te])
            oof_risk.loc[te, name] = risk_te
            oof_group.loc[te, name] = risk_groups(risk_tr, risk_te)
            row: dict[str, Any] = {"model": name, "fold": k, "test_centers": ",".join(fold_def[-1]["test_centers"]),
                                   "n_train": len(tr), "n_test": len(te), "events_test": int(_ev_t(y[te])[0].sum()),
                                   "fit_seconds": fit_s, **evaluate_risk(y[tr], y[te], risk_te, tau=tau)}
            row["ibs"] = float("nan")
            if name in oof_surv:
                def sf(times, m=m, te=te, data=data):
                    return m.predict_survival(data.iloc[te], times)
                try:
                    row["ibs"] = integrated_brier(y[tr], y[te], sf, tau=tau)[0]
                except ValueError as exc:
                    row["note"] = f"{row.get('note', '')} ibs: {exc}".strip()
                oof_surv[name].loc[te, :] = sf(np.asarray(horizons, float))
            rows.append(row)
            done += 1
            if progress is not None:
                progress(done, total)
    per_fold = pd.DataFrame(rows)
    summary = _summarise(per_fold)
    calib = []
    for name, s in oof_surv.items():
        tab = calibration_table(y, {h: s[h].to_numpy(float) for h in horizons})
        calib.append(tab.assign(model=name))
    calibration = pd.concat(calib, ignore_index=True) if calib else pd.DataFrame()
    if not calibration.empty:
        err = (calibration.assign(w=calibration["n"] * (calibration["predicted"] - calibration["observed"]).abs())
               .groupby("model").apply(lambda d: d["w"].sum() / d.loc[d["observed"].notna(), "n"].sum(),
                                       include_groups=False))
        summary["calibration_mae"] = err.reindex(summary.index)
    return CVResult(per_fold, summary, oof_risk, oof_group, oof_surv, calibration, fold_def)


def _summarise(per_fold: pd.DataFrame) -> pd.DataFrame:
    """Median, range and mean of each metric over folds, per model (row order of first appearance)."""
    order = list(dict.fromkeys(per_fold["model"]))
    out = {}
    for name in order:
        d = per_fold[per_fold["model"] == name]
        rec: dict[str, Any] = {"n_folds": len(d)}
        for metric in ("uno_c", "harrell_c", "ibs", "fit_seconds"):
            v = d[metric].to_numpy(float)
            v = v[np.isfinite(v)]
            rec[f"{metric}_median"] = float(np.median(v)) if v.size else float("nan")
            rec[f"{metric}_min"] = float(v.min()) if v.size else float("nan")
            rec[f"{metric}_max"] = float(v.max()) if v.size else float("nan")
            rec[f"{metric}_mean"] = float(v.mean()) if v.size else float("nan")
        out[name] = rec
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("model")


# --------------------------------------------------------------------------------------------------
# Persistence
# --------------------------------------------------------------------------------------------------

_BUNDLE_KIND = "hemotwin.survival-model"


def save_model(path: str | Path, model: BaseEstimator, *, design: dict[str, Any], metadata: dict[str, Any]) -> Path:
    """Write a fitted model with its design specification and metadata (joblib).

    joblib files execute code when loaded: load only files you produced (see :func:`load_model`).
    """
    import joblib

    import hemotwin

    path = Path(path)
    joblib.dump({"kind": _BUNDLE_KIND, "hemotwin_version": hemotwin.__version__, "model": model,
                 "design": design, "metadata": metadata}, path, compress=3)
    return path


def load_model(path: str | Path) -> dict[str, Any]:
    """Read a bundle written by :func:`save_model` (trusted files only: joblib runs pickled code)."""
    import joblib

    path = Path(path)
    if not path.is_file():
        raise InputError("model", str(path), "a model.joblib file written by `hemotwin cohort fit`")
    try:
        bundle = joblib.load(path)
    except Exception:
        # Whatever joblib/pickle says about a foreign file ("invalid load key ...") helps nobody.
        raise InputError("model", str(path), "a model.joblib file written by `hemotwin cohort fit` (this file is "
                                             "not a readable joblib model)") from None
    if not isinstance(bundle, dict) or bundle.get("kind") != _BUNDLE_KIND:
        raise InputError("model", str(path), "a model bundle written by `hemotwin cohort fit`")
    return bundle
