"""Flags: the diagnostic rules a differential triggers, each with the rule that fired and its source.

Every flag is decided on an interval, never on a point estimate alone (docs/clinical_rules.md §2: "a
report must say when the interval straddles a threshold"):

* ``positive``: the whole 95 % interval satisfies the rule;
* ``negative``: none of it does (for *presence* rules: the interval reaches zero);
* ``indeterminate``: the interval straddles the threshold; the flag then states how many more cells
  would decide it if the observed proportion held.

The interval is the misclassification-corrected one when a chain calibration is available (it
covers the true proportion), else the plain Clopper–Pearson interval on the counted calls (it covers
the proportion of *calls*, and says so). Thresholds and their sources are in :data:`RULES`.

**The evidence rule** (:class:`Evidence`, one rule for every flag that reads a rare class: blasts,
promyelocytes, immature granulocytes, nucleated red cells, smudge cells, eosinophils, basophils). A
call of a rare class is *confident* when its probability, summed over its flag group
(:data:`EVIDENCE_GROUPS`), reaches :data:`RARE_CONFIDENCE` (stricter than the review threshold;
:func:`is_confident`); every other classified cell is
*unsure* (below the review threshold, or a rare-class call below the evidence threshold). Such a flag
is positive only if, besides its interval, the confident calls alone decide it positive with every
unsure cell counted as another leukocyte, it stays positive with the unsure calls of its classes
counted as the class, and at least :data:`MIN_CONFIDENT_CELLS` confident calls stand behind it. A
negative flag becomes indeterminate when those two readings differ (the unsure cells could tip it).
Either way the flag says how many cells need review (docs/diagnosis.md, "The evidence rule").
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hemotwin.diagnosis.differential import (
    LEUKOCYTE_CODES,
    Estimate,
    State,
    additional_cells_needed,
    cp_count_estimate,
    cp_estimate,
)
from hemotwin.errors import InputError
from hemotwin.taxonomy import BLAST_CODES, members

__all__ = [
    "EVIDENCE_GROUPS",
    "MAJOR_ADVICE_MAX",
    "MINOR_ADVICE_MAX",
    "MIN_CONFIDENT_CELLS",
    "RARE_CODES",
    "RARE_CONFIDENCE",
    "RULES",
    "Counting",
    "CountingAdvice",
    "Evidence",
    "Flag",
    "Rule",
    "counting_advice",
    "evaluate_flags",
    "evidence_probability",
    "evidence_threshold",
    "is_confident",
]

Severity = Literal["urgent", "major", "minor"]
Specimen = Literal["blood", "marrow"]


@dataclass(frozen=True)
class Rule:
    """A flag's definition.

    Attributes
    ----------
    id
        Stable identifier (report.json ``flags[].id``).
    title
        Short name.
    numerator, denominator
        Class codes of the proportion it reads (per 100 leukocytes when outside the denominator).
    kind
        ``"at_least"`` (proportion >= low), ``"range"`` (low <= proportion < high) or ``"present"``
        (the interval excludes zero).
    low, high
        Thresholds in percent.
    rule
        The rule in words, with its thresholds.
    source
        Where the threshold comes from: a docs/clinical_rules.md section (§1 blast thresholds, §11 reference
        differential and cell definitions) and the published sources it rests on.
    severity
        ``urgent`` (act today), ``major`` or ``minor``.
    """

    id: str
    title: str
    numerator: tuple[str, ...]
    kind: Literal["at_least", "range", "present"]
    low: float
    rule: str
    source: str
    severity: Severity = "major"
    high: float | None = None
    denominator: tuple[str, ...] = LEUKOCYTE_CODES


PROMYELOCYTES = ("PMO", "PMB")
IMMATURE_GRANULOCYTES = members("ig")
LYMPHOCYTES = members("lymphocyte")

#: Every rule, in report order. ``blasts*`` rules read blasts + blast equivalents when the APL
#: pattern is positive (docs/clinical_rules.md §1: abnormal promyelocytes are counted with the blasts).
RULES: tuple[Rule, ...] = (
    Rule("blasts_ge_20", "Blasts >= 20 %", BLAST_CODES, "at_least", 20.0,
         "blasts (MYO + MOB, + blast equivalents when the APL pattern is present) >= 20 % of leukocytes: AML "
         "range under WHO 5th and ICC 2022",
         "docs/clinical_rules.md §1, row 'AML myelodysplasia-related ... or NOS': >= 20 % = AML (WHO 5th, ICC 2022)",
         "urgent"),
    Rule("blasts_10_19", "Blasts 10-19 %", BLAST_CODES, "range", 10.0,
         "blasts 10-19 % of leukocytes: ICC 2022 MDS/AML; WHO 5th MDS with increased blasts 2 when counted in "
         "marrow; >= 10 % meets the ICC cut-off of AML with recurrent genetic abnormalities (genetics needed)",
         "docs/clinical_rules.md §1, last row (10-19 % = MDS/AML, ICC; marrow 10-19 % = MDS-IB2, WHO) and first row "
         "(>= 10 % for AML with defining genetic abnormalities, ICC)", "major", high=20.0),
    Rule("blasts_5_19_blood", "Blood blasts 5-19 %", BLAST_CODES, "range", 5.0,
         "blasts 5-19 % of leukocytes in blood: WHO 5th MDS with increased blasts 2 (blood criterion)",
         "docs/clinical_rules.md §1, last row: 'marrow (5-19 % blood) = MDS with increased blasts 2' (WHO 5th)",
         "major", high=20.0),
    Rule("apl_pattern", "APL pattern (abnormal promyelocytes)", PROMYELOCYTES, "at_least", 10.0,
         "promyelocytes, bilobed forms included (PMO + PMB), >= 10 % of leukocytes: suspect acute promyelocytic "
         "leukaemia; abnormal promyelocytes are blast equivalents; exclude PML::RARA today (medical emergency)",
         "docs/clinical_rules.md §1: APL (PML::RARA) >= 10 % under ICC, no cut-off under WHO; abnormal "
         "promyelocytes are blast equivalents; docs/clinical_rules.md §11, cell definitions PMO/PMB (bilobed "
         "'butterfly' nuclei of hypogranular APL; Sainty et al., Blood 2000). Normal blood has no promyelocytes "
         "(docs/clinical_rules.md §11, reference differential)", "urgent"),
    Rule("cll_pattern", "CLL pattern (lymphocytosis with smudge cells)", LYMPHOCYTES, "at_least", 45.0,
         "lymphocytes (LYT + LYA) > 45 % of leukocytes AND smudge cells >= 5 per 100 leukocytes: CLL pattern; "
         "confirm by flow cytometry (iwCLL: B lymphocytes >= 5 x10^9/L)",
         "docs/clinical_rules.md §11, reference differential (lymphocytes 20-45 %) and cell definition KSC "
         "('frequent in CLL'); smudge cells a median of ~25-30 % of lymphocytes in CLL (Nowakowski et al., "
         "J Clin Oncol 2009;27:1844); the 5 per 100 cut-off is this project's", "major"),
    Rule("left_shift", "Left shift", IMMATURE_GRANULOCYTES, "at_least", 5.0,
         "immature granulocytes (PMO + PMB + MYB + MMZ) >= 5 % of leukocytes, OR bands (NGB) >= 10 %: left "
         "shift (infection, G-CSF, marrow infiltration, CML)",
         "docs/clinical_rules.md §11, reference differential (bands 0-5 %, no immature granulocytes in normal "
         "blood); bandemia > 10 % bands as in the SIRS criteria (Bone et al., Chest 1992;101:1644); the 5 % IG "
         "cut-off is this project's, above the 1-3 % automated analysers flag, so a 200-cell count of normal "
         "blood stays negative",
         "minor"),
    Rule("eosinophilia", "Eosinophilia", ("EOS",), "at_least", 6.0,
         "eosinophils > 6 % of leukocytes (above the reference range)",
         "docs/clinical_rules.md §11, reference differential (eosinophils 1-6 %)", "minor"),
    Rule("basophilia", "Basophilia", ("BAS",), "at_least", 2.0,
         "basophils > 2 % of leukocytes (above the reference range); persistent basophilia suggests a "
         "myeloproliferative neoplasm (CML)", "docs/clinical_rules.md §11, reference differential (basophils "
         "0-2 %)", "minor"),
    Rule("monocytosis", "Monocytosis", ("MON",), "at_least", 10.0,
         "monocytes > 10 % of leukocytes (above the reference range)",
         "docs/clinical_rules.md §11, reference differential (monocytes 2-10 %)", "minor"),
    Rule("nrbc", "Nucleated red cells", ("EBO",), "present", 0.0,
         "nucleated red cells present (interval per 100 leukocytes excludes 0): marrow stress, infiltration "
         "or myelodysplasia; correct the white count for them",
         "docs/clinical_rules.md §11, cell definition EBO and denominators (ICSH convention of NRBC per 100 "
         "leukocytes)", "minor"),
)

#: Second conditions of compound rules: id -> (numerator, threshold %, kind) combined with AND / OR.
_CLL_SMUDGE = (("KSC",), 5.0)
_BANDS = (("NGB",), 10.0)


#: Classes absent or rare (< 6 %) in normal adult blood: blasts, promyelocytes (bilobed included),
#: myelocytes, metamyelocytes, nucleated red cells, smudge cells, eosinophils (1-6 %) and basophils
#: (0-2 %). A flag that reads one of them is decided under the evidence rule (:class:`Evidence`).
RARE_CODES: tuple[str, ...] = ("MYO", "MOB", "PMO", "PMB", "MYB", "MMZ", "EBO", "KSC", "EOS", "BAS")
#: Probability (summed over the call's :data:`EVIDENCE_GROUPS` group) a rare-class call needs to count
#: as evidence for a positive flag. Measured with the shipped model: on five twin samples (five cases,
#: one preset each) 190 of 227 rare-class calls reached 0.9 on their own probability, and most that
#: did not were myeloblast/monoblast splits (confident blasts on the group sum) or lymphocytes called
#: blasts in a CLL sample; on 210 cells of BCCD fields (another microscope; the fields after the first
#: 40) 14 rare-class calls reached 0.9 against 92 at the 0.5 review threshold, whose 82 wrong ones
#: were neutrophils called basophils, myelocytes or smudge cells (docs/diagnosis.md).
RARE_CONFIDENCE = 0.9
#: Fewest confident calls behind a positive rare-class flag: one or two cells are an observation to
#: confirm by eye, not a count (a "present" rule such as NRBC would otherwise fire on one cell).
MIN_CONFIDENT_CELLS = 3


def evidence_threshold(code: str, *, min_confidence: float, rare_confidence: float = RARE_CONFIDENCE) -> float:
    """The top probability a call of ``code`` needs to count as evidence for a flag.

    Parameters
    ----------
    code
        The called class.
    min_confidence
        The review threshold (cells below it are not counted at all).
    rare_confidence
        The evidence threshold of the rare classes (:data:`RARE_CODES`).

    Returns
    -------
    float
        ``max(min_confidence, rare_confidence)`` for a rare class, else ``min_confidence``.
    """
    for name, v in (("min_confidence", min_confidence), ("rare_confidence", rare_confidence)):
        if not 0 <= v <= 1:
            raise InputError(name, v, "a probability in [0, 1]")
    return max(min_confidence, rare_confidence) if code in RARE_CODES else min_confidence


#: The classes whose summed probability is a rare-class call's evidence: the narrowest flag numerator
#: holding the class (a cell the model splits between myeloblast and monoblast is a confident *blast*;
#: one it splits between myeloblast and lymphocyte is not). Other rare classes stand alone.
EVIDENCE_GROUPS: dict[str, tuple[str, ...]] = {"MYO": BLAST_CODES, "MOB": BLAST_CODES, "PMO": PROMYELOCYTES,
                                               "PMB": PROMYELOCYTES, "MYB": IMMATURE_GRANULOCYTES,
                                               "MMZ": IMMATURE_GRANULOCYTES}


def evidence_probability(call: str, top: Sequence[tuple[str, float]]) -> float:
    """The probability a call's flags read: summed over its :data:`EVIDENCE_GROUPS` group.

    Parameters
    ----------
    call
        The called class.
    top
        The cell's most probable classes as ``(code, probability)`` (the report's three are enough:
        a group has at most four classes, and the probabilities left out are the smallest).

    Returns
    -------
    float
        The summed probability of the call's group (its own probability for a class outside them).
    """
    probs = dict(top)
    return float(sum(probs.get(k, 0.0) for k in EVIDENCE_GROUPS.get(call, (call,))))


def is_confident(call: str, confidence: float, top: Sequence[tuple[str, float]], *, min_confidence: float,
                 rare_confidence: float = RARE_CONFIDENCE) -> bool:
    """Whether a classified cell is a confident call under the evidence rule.

    A cell below the review threshold never is; a call of a common class at or above it is; a
    rare-class call is when :func:`evidence_probability` reaches :func:`evidence_threshold`.

    Parameters
    ----------
    call, confidence
        The call and its (top) probability.
    top
        The cell's most probable classes as ``(code, probability)``.
    min_confidence, rare_confidence
        The review threshold and the rare classes' evidence threshold.

    Returns
    -------
    bool
        True for a confident call.
    """
    need = evidence_threshold(call, min_confidence=min_confidence, rare_confidence=rare_confidence)
    if confidence < min_confidence:
        return False
    return call not in RARE_CODES or max(confidence, evidence_probability(call, top)) >= need


Judge = Callable[[Estimate], State]


class Evidence(BaseModel):
    """The cells behind one rare-class condition of a flag, and the rule that weighs them.

    Attributes
    ----------
    codes
        The condition's classes (its numerator).
    confident
        Calls of those classes at or above their evidence threshold.
    unsure
        Calls of those classes below it (counted between the thresholds, or referred).
    unsure_other
        Every other unsure cell: referred cells of other calls, and unconfirmed calls of other rare
        classes.
    low
        Clopper–Pearson estimate on the confident calls, every unsure cell counted as a leukocyte of
        another class (the least the class can be).
    high
        The same with the condition's unsure calls counted as the class (the most the calls can make
        of it; the other unsure cells stay other leukocytes).
    low_own
        ``low`` with only the condition's own unsure calls as other leukocytes (the other unsure cells
        set aside): when it reads as ``low`` does, the other unsure cells cannot change the decision and
        are not counted in ``review_cells``. None: they are.
    min_cells
        Fewest confident calls behind a positive condition.
    state
        What the rule made of the condition (filled by :meth:`weigh`).
    reason
        Why the rule changed the interval's state, or None.
    issue
        The same as a key: ``"unsure_could_tip"``, ``"too_few_confident"`` or
        ``"confident_calls_insufficient"`` (the corrected interval was positive, the confident calls
        alone are not); None when the rule changed nothing.
    review_cells
        Cells a reviewer must look at to settle the condition (0 when the rule changed nothing).
    """

    model_config = ConfigDict(extra="forbid")

    codes: tuple[str, ...]
    confident: int = Field(ge=0)
    unsure: int = Field(ge=0)
    unsure_other: int = Field(ge=0)
    low: Estimate
    high: Estimate
    low_own: Estimate | None = None
    min_cells: int = MIN_CONFIDENT_CELLS
    state: State | None = None
    reason: str | None = None
    issue: Literal["unsure_could_tip", "too_few_confident", "confident_calls_insufficient"] | None = None
    review_cells: int = 0

    def weigh(self, state: State, judge: Judge) -> Evidence:
        """Apply the evidence rule to the state its interval gave (``judge`` reads an estimate).

        * positive stays positive only when ``judge(low)`` and ``judge(high)`` are both positive and
          at least ``min_cells`` confident calls stand behind it; otherwise indeterminate;
        * negative stays negative unless ``judge(low) != judge(high)`` (the unsure cells could tip
          it): then indeterminate;
        * indeterminate stays indeterminate.

        Returns
        -------
        Evidence
            A copy with ``state``, ``reason`` and ``review_cells`` set.
        """
        lo_s, hi_s = judge(self.low), judge(self.high)
        others = self.low_own is None or judge(self.low_own) != lo_s  # can the other unsure cells matter?
        n_unsure = self.unsure + (self.unsure_other if others else 0)
        codes = "+".join(self.codes)
        new, reason, review, issue = state, None, 0, None
        if state == "positive" and not (lo_s == hi_s == "positive"):
            new, issue = "indeterminate", "unsure_could_tip"
            if n_unsure:
                reason, review = (f"{n_unsure} unsure cell(s) could tip it: with every unsure cell as another "
                                  f"leukocyte the confident {codes} calls read {lo_s}, with the {self.unsure} unsure "
                                  f"{codes} call(s) as {codes} it reads {hi_s}"), n_unsure
            else:
                issue = "confident_calls_insufficient"
                reason, review = (f"the {self.confident} confident {codes} call(s) alone read {lo_s}"), self.confident
        elif state == "positive" and self.confident < self.min_cells:
            new, issue = "indeterminate", "too_few_confident"
            reason, review = (f"only {self.confident} confident {codes} call(s) (at least {self.min_cells} needed "
                              f"for a positive flag)"), self.confident + self.unsure
        elif state == "negative" and lo_s != hi_s and n_unsure:
            new, issue = "indeterminate", "unsure_could_tip"
            reason, review = (f"{n_unsure} unsure cell(s) could tip it: the confident {codes} calls read {lo_s}, "
                              f"with the {self.unsure} unsure {codes} call(s) as {codes} it reads {hi_s}"), n_unsure
        return self.model_copy(update={"state": new, "reason": reason, "issue": issue, "review_cells": review})


class Flag(BaseModel):
    """A rule's outcome on one sample.

    Attributes
    ----------
    id, title, rule, source, severity
        From the :class:`Rule`.
    state
        ``positive`` | ``negative`` | ``indeterminate``.
    estimates
        The estimates the rule read (the interval it was decided on).
    additional_cells
        For an indeterminate flag: more cells that would decide it if the observed proportions held
        (None: not decidable by counting alone).
    evidence
        The evidence rule's reading of each rare-class condition (empty for the other rules).
    review_cells
        Cells on the review list that could change this flag (the flag is indeterminate until they
        are reviewed); 0 when the evidence rule changed nothing.
    statement
        One sentence for the report.
    """

    model_config = ConfigDict(extra="forbid")

    id: str
    title: str
    state: State
    rule: str
    source: str
    severity: Severity
    estimates: list[Estimate]
    additional_cells: int | None = None
    additional_cells_method: str | None = None
    evidence: list[Evidence] = Field(default_factory=list)
    review_cells: int = 0
    statement: str


class Counting:
    """The estimates the flags read: corrected when a posterior is given, else Clopper–Pearson.

    Parameters
    ----------
    counts
        Counted calls per class code (cells above the confidence threshold).
    posterior
        Optional :class:`~hemotwin.diagnosis.correction.CorrectedPosterior` of the sample.
    calls_all
        Calls of every classified cell (referred included): the input of the corrected estimate.
    calibration
        The chain calibration behind ``posterior`` (for the additional-cells search).
    confident
        Counted calls that are confident under the evidence rule (:func:`is_confident`), per class;
        None: every counted call is. Every classified cell not in it is *unsure* (the evidence rule).
    search
        Find the cells needed by recomputing the corrected interval at larger counts (blast rules,
        about half a second each); False uses the 1/sqrt(n) approximation for the threshold rules.
        An undecided "present" rule (NRBC) is always searched: it has no approximation.
    """

    def __init__(self, counts: Mapping[str, int], *, posterior=None, calls_all: Mapping[str, int] | None = None,
                 calibration=None, confident: Mapping[str, int] | None = None, seed: int = 0,
                 search: bool = True) -> None:
        self.counts = dict(counts)
        self.posterior = posterior
        self.calls_all = dict(calls_all or counts)
        self.confident = dict(counts if confident is None else confident)
        for code, k in self.confident.items():
            if not 0 <= k <= self.counts.get(code, 0):
                raise InputError(f"confident[{code}]", k, "at most the counted calls of the class")
        for code, k in self.counts.items():
            if k > self.calls_all.get(code, 0):
                raise InputError(f"calls_all[{code}]", self.calls_all.get(code, 0),
                                 "at least the counted calls of the class (every classified cell)")
        self.calibration = calibration
        self.seed = seed
        self.search = search
        self._cache: dict[tuple, Estimate] = {}

    @property
    def corrected(self) -> bool:
        """Whether a chain calibration's posterior is available (the corrected interval)."""
        return self.posterior is not None

    def plain(self, numerator: tuple[str, ...], *, denominator: tuple[str, ...] = LEUKOCYTE_CODES,
              name: str | None = None) -> Estimate:
        """The plain Clopper–Pearson estimate of ``numerator`` among ``denominator`` on the counted calls."""
        return cp_estimate(self.counts, numerator, denominator=denominator, name=name)

    def estimate(self, numerator: tuple[str, ...], *, denominator: tuple[str, ...] = LEUKOCYTE_CODES,
                 name: str | None = None) -> Estimate:
        """The estimate a decision rests on (corrected when available)."""
        key = (numerator, denominator, name)
        if key not in self._cache:
            plain = self.plain(numerator, denominator=denominator, name=name)
            if self.posterior is None:
                self._cache[key] = plain
            else:
                from hemotwin.diagnosis.correction import corrected_estimate

                self._cache[key] = corrected_estimate(self.posterior, numerator, denominator=denominator,
                                                      name=plain.name, count=plain.count, n=plain.n, seed=self.seed)
        return self._cache[key]

    def evidence(self, numerator: tuple[str, ...], *, denominator: tuple[str, ...] = LEUKOCYTE_CODES,
                 name: str | None = None) -> Evidence | None:
        """The cells behind ``numerator`` under the evidence rule (None when it reads no rare class).

        ``low``: confident calls of the numerator over the confident calls of the denominator plus
        every unsure cell (all taken as other leukocytes). ``high``: the same with the numerator's
        unsure calls taken as the class (the other unsure cells stay other leukocytes: only a cell
        called the class is taken to be possibly of it).
        """
        if not set(numerator) & set(RARE_CODES):
            return None
        conf, every = self.confident, self.calls_all
        x = sum(conf.get(k, 0) for k in numerator)
        unsure = sum(every.get(k, 0) - conf.get(k, 0) for k in numerator)
        unsure_all = sum(every.values()) - sum(conf.values())
        n_den = sum(conf.get(k, 0) for k in denominator)
        per_100 = not set(numerator) <= set(denominator)
        label = name or "+".join(numerator)
        low = cp_count_estimate(x, n_den + unsure_all, numerator=numerator,
                                denominator=denominator, name=f"{label}, confident calls")
        high = cp_count_estimate(x + unsure, n_den + unsure_all - (unsure if per_100 else 0), numerator=numerator,
                                 denominator=denominator, name=f"{label}, confident + unsure calls")
        low_own = cp_count_estimate(x, n_den + unsure, numerator=numerator, denominator=denominator,
                                    name=f"{label}, confident calls (own unsure calls as other leukocytes)")
        return Evidence(codes=numerator, confident=x, unsure=unsure, unsure_other=unsure_all - unsure, low=low,
                        high=high, low_own=low_own)

    def additional_present(self, est: Estimate) -> tuple[int | None, str | None]:
        """More cells for a corrected interval that reaches 0 although cells were called to clear 0.

        Recomputes the corrected interval at larger counts with the observed call proportions (a
        "present" rule cannot use the 1/sqrt(n) projection: its threshold is the interval's own edge).
        """
        if self.posterior is None or self.calibration is None or est.count == 0:
            return None, None
        from hemotwin.diagnosis.correction import corrected_additional_cells

        extra = corrected_additional_cells(self.calls_all, self.calibration, est.numerator, 0.0,
                                           denominator=est.denominator, max_cells=5_000, present=True,
                                           seed=self.seed)
        return extra, "corrected interval recomputed for larger counts at the observed call proportions"

    def additional(self, est: Estimate, threshold: float) -> tuple[int | None, str]:
        """More cells to decide ``est`` against ``threshold`` (and how that number was found)."""
        if est.method == "clopper-pearson":
            x, n = est.count, est.n + (est.count if est.per_100 else 0)
            return additional_cells_needed(x, n, threshold, per_100=est.per_100), "exact (Clopper–Pearson)"
        if self.search and self.calibration is not None and not est.per_100:
            from hemotwin.diagnosis.correction import corrected_additional_cells

            extra = corrected_additional_cells(self.calls_all, self.calibration, est.numerator, threshold,
                                               denominator=est.denominator, seed=self.seed)
            return extra, "corrected interval recomputed for larger counts at the observed call proportions"
        # Otherwise assume the corrected interval's width on the threshold's side shrinks as 1/sqrt(n)
        # (counting noise); the part due to the confusion matrix does not shrink, so this is a lower bound.
        n0 = sum(self.calls_all.values())
        side = (est.hi - est.percent) if est.percent < threshold else (est.percent - est.lo)
        gap = abs(est.percent - threshold)
        if n0 == 0 or gap == 0 or side <= 0:
            return None, "not decidable at the observed proportion"
        total = n0 * (side / gap) ** 2
        return max(1, round(total - n0)), "approximate (corrected interval narrowing as 1/sqrt(n); a lower bound)"


def _state_at_least(e: Estimate, t: float) -> State:
    if e.lo >= t:
        return "positive"
    if e.hi < t:
        return "negative"
    return "indeterminate"


def _state_range(e: Estimate, lo_t: float, hi_t: float) -> tuple[State, float | None]:
    """State against [lo_t, hi_t) and the threshold that the interval straddles (if any)."""
    if e.lo >= lo_t and e.hi < hi_t:
        return "positive", None
    if e.hi < lo_t or e.lo >= hi_t:
        return "negative", None
    # Straddles one edge (or both): the nearer edge to the estimate is the one to settle.
    edges = [t for t in (lo_t, hi_t) if e.lo < t <= e.hi]
    return "indeterminate", min(edges, key=lambda t: abs(e.percent - t)) if edges else None


def _fmt(e: Estimate) -> str:
    unit = " per 100 leukocytes" if e.per_100 else " %"
    return f"{e.name} {e.percent:.1f}{unit} (95 % {e.lo:.1f}-{e.hi:.1f}, {e.method})"


def _combine(states: list[State], how: Literal["and", "or"]) -> State:
    if how == "and":
        if "negative" in states:
            return "negative"
        return "positive" if all(s == "positive" for s in states) else "indeterminate"
    if "positive" in states:
        return "positive"
    return "negative" if all(s == "negative" for s in states) else "indeterminate"


def evaluate_flags(counting: Counting, *, specimen: Specimen = "blood", wbc_1e9_per_l: float | None = None
                   ) -> list[Flag]:
    """Apply every rule of :data:`RULES` to a sample.

    Parameters
    ----------
    counting
        The sample's counts (and corrected posterior when calibrated).
    specimen
        ``"blood"`` or ``"marrow"``; ``blasts_5_19_blood`` applies to blood only.
    wbc_1e9_per_l
        White count, when known: absolute counts are added to the statements.
    """
    if specimen not in ("blood", "marrow"):
        raise InputError("specimen", specimen, "blood or marrow")
    flags: list[Flag] = []
    apl = _evaluate(next(r for r in RULES if r.id == "apl_pattern"), counting, blast_codes=BLAST_CODES)
    blast_codes = (*BLAST_CODES, *PROMYELOCYTES) if apl.state == "positive" else BLAST_CODES
    for rule in RULES:
        if rule.id == "blasts_5_19_blood" and specimen != "blood":
            continue
        f = apl if rule.id == "apl_pattern" else _evaluate(rule, counting, blast_codes=blast_codes)
        if wbc_1e9_per_l is not None and f.estimates and not f.estimates[0].per_100:
            e = f.estimates[0]
            absolute = e.percent / 100 * wbc_1e9_per_l
            f = f.model_copy(update={"statement": f.statement + f" Absolute: about {absolute:.2f} x10^9/L "
                                     f"(of WBC {wbc_1e9_per_l:g})."})
        flags.append(f)
    return flags


def _judge(kind: str, low: float, high: float | None) -> Judge:
    """The interval rule of a condition as a function of its estimate."""
    if kind == "present":
        # Present when the interval excludes 0; absent ("negative") when no cell was called. A
        # corrected interval can reach 0 although cells were called (the posterior lets every call be
        # a misread neighbour): that is undecided, not absent -- reporting it negative would be a
        # false negative (measured: MDS-IB2 samples with 20 of 500 cells called NRBC).
        return lambda e: "positive" if e.lo > 0 else ("negative" if e.count == 0 else "indeterminate")
    if kind == "range":
        return lambda e: _state_range(e, low, high or 100.0)[0]
    return lambda e: _state_at_least(e, low)


def _condition(c: Counting, codes: tuple[str, ...], judge: Judge, *, denominator: tuple[str, ...],
               name: str | None) -> tuple[Estimate, State, State, Evidence | None]:
    """One condition: its estimate, the interval's state, the state under the evidence rule, the evidence."""
    e = c.estimate(codes, denominator=denominator, name=name)
    state = judge(e)
    ev = c.evidence(codes, denominator=denominator, name=e.name)
    if ev is None:
        return e, state, state, None
    ev = ev.weigh(state, judge)
    return e, state, ev.state or state, ev


def _evaluate(rule: Rule, c: Counting, *, blast_codes: tuple[str, ...]) -> Flag:
    num = blast_codes if rule.numerator == BLAST_CODES else rule.numerator
    name = ("blasts + blast equivalents" if num != BLAST_CODES else "blasts") if rule.numerator == BLAST_CODES \
        else None
    e, s1, state, ev1 = _condition(c, num, _judge(rule.kind, rule.low, rule.high), denominator=rule.denominator,
                                   name=name)
    estimates = [e]
    evidence = [ev1] if ev1 is not None else []
    # The threshold to settle by counting: only where the *interval* straddles it (a flag the evidence
    # rule made indeterminate is settled by reviewing cells, not by counting more).
    straddled: float | None = None
    if s1 == "indeterminate" and rule.kind == "range":
        straddled = _state_range(e, rule.low, rule.high or 100.0)[1]
    elif s1 == "indeterminate" and rule.kind == "at_least":
        straddled = rule.low
    extra: int | None = None
    method: str | None = None
    if rule.kind == "present" and s1 == "indeterminate":
        extra, method = c.additional_present(e)
    compound: tuple[tuple[str, ...], float, str] | None = None
    if rule.id == "cll_pattern":
        compound = (*_CLL_SMUDGE, "and")
    elif rule.id == "left_shift":
        compound = (*_BANDS, "or")
    if compound is not None:
        codes2, t2, how = compound
        e2, s2, g2, ev2 = _condition(c, codes2, _judge("at_least", t2, None), denominator=rule.denominator,
                                     name=None)
        estimates.append(e2)
        evidence += [ev2] if ev2 is not None else []
        new_state = _combine([state, g2], how)  # type: ignore[arg-type]
        if new_state == "indeterminate":
            # Settle the undecided part: the first indeterminate condition.
            if state != "indeterminate" and g2 == "indeterminate":
                e, straddled = e2, (t2 if s2 == "indeterminate" else None)
        else:
            straddled = None
        state = new_state
    if state == "indeterminate" and straddled is not None:
        search = c.search
        c.search = search and rule.id.startswith("blasts")  # the exact search is worth it for blasts only
        try:
            extra, method = c.additional(e, straddled)
        finally:
            c.search = search
    elif state != "indeterminate":
        extra, method = None, None
    review = sum(x.review_cells for x in evidence) if state == "indeterminate" else 0
    reasons = [x.reason for x in evidence if x.reason and state == "indeterminate"]
    statement = _statement(rule, state, estimates, extra, review=review, reasons=reasons)
    return Flag(id=rule.id, title=rule.title, state=state, rule=rule.rule, source=rule.source,
                severity=rule.severity, estimates=estimates, additional_cells=extra,
                additional_cells_method=method, evidence=evidence, review_cells=review, statement=statement)


def _statement(rule: Rule, state: State, estimates: list[Estimate], extra: int | None, *, review: int = 0,
               reasons: list[str] | None = None) -> str:
    values = "; ".join(_fmt(e) for e in estimates)
    if state == "positive":
        return f"{rule.title}: POSITIVE. {values}."
    if state == "negative":
        return f"{rule.title}: negative. {values}."
    more = f" About {extra:,} more cells would decide it if the observed proportions held." if extra is not None \
        else ""
    if review:
        return (f"{rule.title}: INDETERMINATE (needs review: {review:,} cells; " + "; ".join(reasons or [])
                + f"). {values}. Review the listed cells; the flag can be positive only on confident calls.{more}")
    if rule.kind == "present":
        return (f"{rule.title}: INDETERMINATE (cells were called, but the interval reaches 0). {values}. "
                f"Review the cells called as such in the gallery to confirm them.{more}")
    more = more or " Counting more cells alone would not decide it at the observed proportion."
    return f"{rule.title}: INDETERMINATE (the interval straddles the threshold). {values}.{more}"


def flag_summary(flags: list[Flag]) -> dict[str, str]:
    """Flag id -> state."""
    return {f.id: f.state for f in flags}


#: Most additional cells the counting advice asks for on behalf of a *minor* flag alone.
MINOR_ADVICE_MAX = 300
#: Most additional cells it asks for on behalf of an urgent or major flag: beyond ~1,200 cells in
#: all a manual or analyser differential is no longer a practical answer (ICSH reference counts
#: are 200-500 cells); the flag then stays indeterminate and says how many cells it would take.
MAJOR_ADVICE_MAX = 1000


class CountingAdvice(BaseModel):
    """How many more cells the report recommends counting, and which indeterminate flags that decides.

    Attributes
    ----------
    additional_cells
        More cells to count (None: no flag that counting can decide within the policy is open).
    decides
        Ids of the indeterminate flags that count would decide (if the observed proportions held).
    left_open
        Indeterminate flags the advice does not chase, each ``{"id", "severity", "additional_cells"}``
        (``additional_cells`` None: counting alone cannot decide it).
    policy, statement
        The rule in words, and one sentence for the report.
    """

    model_config = ConfigDict(extra="forbid")

    additional_cells: int | None
    decides: list[str]
    left_open: list[dict]
    policy: str
    statement: str


def counting_advice(flags: list[Flag], *, minor_max: int = MINOR_ADVICE_MAX,
                    major_max: int = MAJOR_ADVICE_MAX) -> CountingAdvice:
    """One counting recommendation from the indeterminate flags, by severity.

    An indeterminate urgent or major flag is chased when at most ``major_max`` more cells decide it,
    a minor one (eosinophilia, basophilia, left shift, monocytosis, NRBC) when at most ``minor_max``
    do; the advice is the largest number of additional cells a chased flag needs. Telling 1 %
    basophils from the 2 % cut-off takes ~2,000 cells, which no laboratory counts to rule out a
    minor finding (measured: chasing every flag sent 200-cell normal samples to 1,700-2,000 cells,
    docs/diagnosis.md), and 12.5 % blasts against the 10 % of ``blasts_10_19`` take several
    thousand. Flags not chased stay indeterminate and are listed with the cells they would need.
    """
    for name, v in (("minor_max", minor_max), ("major_max", major_max)):
        if v < 0:
            raise InputError(name, v, "a number of cells >= 0")
    chase, left = [], []
    for f in flags:
        if f.state != "indeterminate":
            continue
        cap = minor_max if f.severity == "minor" else major_max
        (chase if f.additional_cells is not None and f.additional_cells <= cap else left).append(f)
    n = max((f.additional_cells for f in chase), default=None)
    policy = (f"count the most cells an indeterminate flag needs, if at most {major_max:,} more cells decide an "
              f"urgent or major flag and at most {minor_max:,} a minor one")
    if n is None and not left:
        statement = "Every flag is decided: no further count is needed for the flags."
    elif n is None:
        statement = "No indeterminate flag can be decided within these counting limits: no further count is advised."
    else:
        statement = (f"Count {n:,} more cells to decide: " + ", ".join(f.title for f in chase) + ".")
    if left:
        statement += " Left indeterminate: " + "; ".join(
            f"{f.title} ({f.severity}; " + (f"{f.additional_cells:,} more cells" if f.additional_cells is not None
                                           else f"needs review of {f.review_cells:,} cells" if f.review_cells
                                           else "not decidable by counting") + ")" for f in left) + "."
    return CountingAdvice(additional_cells=n, decides=[f.id for f in chase],
                          left_open=[{"id": f.id, "severity": f.severity, "additional_cells": f.additional_cells}
                                     for f in left], policy=policy, statement=statement)
