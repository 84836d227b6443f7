"""The evidence rule for rare-class flags: positive only on confident calls, unsure cells to review.

Every number below is an exact count or an exact Clopper–Pearson bound (no sampling), so the
assertions are exact; where a test depends on where a bound falls, it asserts that premise first.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from hemotwin.diagnosis.analyze import AnalysisConfig, AnalysisEngine, CellResult, FieldResult
from hemotwin.diagnosis.differential import count_differential, cp_count_estimate, cp_estimate
from hemotwin.diagnosis.flags import (
    MIN_CONFIDENT_CELLS,
    RARE_CODES,
    RARE_CONFIDENCE,
    Counting,
    Evidence,
    counting_advice,
    evaluate_flags,
    evidence_threshold,
)
from hemotwin.diagnosis.report import render_html
from hemotwin.diagnosis.sample import FieldSource, SampleSource
from hemotwin.errors import InputError

#: 190 confidently called common leukocytes, as in a normal 200-cell count.
COMMON = {"NGS": 120, "LYT": 60, "MON": 10}
#: The rare calls of the tests: 30 eosinophils (13.6 % of 220 leukocytes, interval 9.4-18.9 %) and
#: 8 nucleated red cells (3.6 per 100 leukocytes).
RARE = {"EOS": 30, "EBO": 8}


def _flags(counts, **kw):
    return {f.id: f for f in evaluate_flags(Counting(counts, **kw))}


def test_low_confidence_rare_calls_give_no_positive_flag():
    counts = {**COMMON, **RARE}
    # Without the rule (every call confident) both flags are positive: the premise of the test.
    plain = _flags(counts)
    assert plain["eosinophilia"].state == "positive" and plain["nrbc"].state == "positive"
    # The same calls, all below the evidence threshold: nothing positive, the cells go to review.
    confident = {**COMMON, "EOS": 0, "EBO": 0}
    f = _flags(counts, confident=confident)
    assert not [k for k, v in f.items() if v.state == "positive"]
    for key, n in (("eosinophilia", 30), ("nrbc", 8)):
        assert f[key].state == "indeterminate"
        # The unsure calls of the flag's own class could tip it; with no confident call the other
        # unsure cells cannot (0 confident reads negative whatever the denominator), so they are
        # not counted. Counting more cells settles none of it.
        assert f[key].review_cells == n and f[key].additional_cells is None
        assert f"needs review: {n} cells" in f[key].statement
        ev = f[key].evidence[0]
        assert ev.confident == 0 and ev.unsure == n and ev.issue == "unsure_could_tip"
    # The flags that read no rare class are untouched.
    assert f["monocytosis"].evidence == [] and f["monocytosis"].state == plain["monocytosis"].state
    advice = counting_advice(list(f.values()))
    assert "needs review of 30 cells" in advice.statement and "needs review of 8 cells" in advice.statement


def test_the_same_number_of_confident_calls_is_positive():
    counts = {**COMMON, **RARE}
    f = _flags(counts, confident=counts)
    eos, nrbc = f["eosinophilia"], f["nrbc"]
    assert eos.state == "positive" and nrbc.state == "positive"
    # Positive because the interval on the confident calls alone clears the threshold.
    assert eos.evidence[0].low.lo >= 6.0 and eos.evidence[0].confident == 30
    assert nrbc.evidence[0].low.lo > 0 and nrbc.evidence[0].confident == 8 >= MIN_CONFIDENT_CELLS
    assert eos.review_cells == nrbc.review_cells == 0


def test_a_mixture_at_the_edge_is_indeterminate_and_a_clear_one_positive():
    # 30 eosinophil calls among 220 counted leukocytes (plain interval 9.4-18.9 %: positive).
    counts = {**COMMON, "EOS": 30}
    assert _flags(counts)["eosinophilia"].state == "positive"
    # 21 confident + 9 unsure: counted as other leukocytes the unsure calls leave 21/220 (lower bound
    # 6.01 %): positive. Ten more cells the model could not place (referred, called NGS) may be other
    # leukocytes too: 21/230, lower bound 5.74 %, so the unsure cells decide it: indeterminate.
    alone = _flags(counts, confident={**COMMON, "EOS": 21})["eosinophilia"]
    assert alone.evidence[0].low.lo >= 6.0 and alone.state == "positive"
    edge = _flags(counts, confident={**COMMON, "EOS": 21}, calls_all={**counts, "NGS": 130})["eosinophilia"]
    ev = edge.evidence[0]
    assert ev.low.lo < 6.0 <= ev.high.lo  # the premise: the unsure cells decide it
    assert (ev.confident, ev.unsure, ev.unsure_other) == (21, 9, 10)
    assert edge.state == "indeterminate" and edge.review_cells == 19 and edge.additional_cells is None
    # 28 of the 30 confident: the confident calls alone clear 6 % whatever the 12 unsure cells are.
    clear = _flags(counts, confident={**COMMON, "EOS": 28}, calls_all={**counts, "NGS": 130})["eosinophilia"]
    assert clear.evidence[0].low.lo >= 6.0 and clear.state == "positive"


def test_few_confident_calls_cannot_make_a_present_flag_positive():
    counts = {**COMMON, "EBO": MIN_CONFIDENT_CELLS - 1}
    f = _flags(counts)
    assert f["nrbc"].state == "indeterminate" and f["nrbc"].evidence[0].issue == "too_few_confident"
    assert f["nrbc"].review_cells == MIN_CONFIDENT_CELLS - 1
    assert _flags({**COMMON, "EBO": MIN_CONFIDENT_CELLS})["nrbc"].state == "positive"


def test_unsure_referred_calls_can_tip_a_negative_flag():
    # 4 eosinophils of 194 counted (interval 0.6-5.2 %: negative against 6 %); 20 more cells the
    # model called eosinophils below the review threshold would make it 24/214 (positive).
    counts = {**COMMON, "EOS": 4}
    f = _flags(counts)
    assert f["eosinophilia"].state == "negative"
    tipped = _flags(counts, calls_all={**COMMON, "EOS": 24})["eosinophilia"]
    assert tipped.state == "indeterminate" and tipped.review_cells == 20
    # One referred eosinophil call cannot tip it: still negative.
    assert _flags(counts, calls_all={**COMMON, "EOS": 5})["eosinophilia"].state == "negative"


def test_unsure_blasts_that_could_cross_the_upper_edge_keep_a_range_flag_open():
    # 150 blasts of 1000 counted (interval 12.8-17.4 %) are inside 10-19 %, unless 60 referred blast
    # calls (210/1060 at most) could push the interval past 20 %.
    counts = {"MYO": 150, "NGS": 700, "LYT": 150}
    assert _flags(counts)["blasts_10_19"].state == "positive"
    calls_all = {**counts, "MYO": 210}
    f = _flags(counts, calls_all=calls_all)["blasts_10_19"]
    assert f.evidence[0].high.hi >= 20.0  # the premise
    assert f.state == "indeterminate" and f.review_cells == 60


def test_evidence_weigh_is_the_one_rule():
    low = cp_count_estimate(2, 100, numerator=("BAS",))
    high = cp_count_estimate(12, 110, numerator=("BAS",))
    ev = Evidence(codes=("BAS",), confident=2, unsure=10, unsure_other=0, low=low, high=high)

    def judge(e):
        return "positive" if e.lo >= 2.0 else ("negative" if e.hi < 2.0 else "indeterminate")

    assert judge(low) == "indeterminate" and judge(high) == "positive"
    assert ev.weigh("positive", judge).state == "indeterminate"
    assert ev.weigh("negative", judge).state == "indeterminate"  # the unsure cells could tip it
    assert ev.weigh("indeterminate", judge).state == "indeterminate"
    assert ev.weigh("indeterminate", judge).review_cells == 0  # the rule changed nothing
    same = Evidence(codes=("BAS",), confident=2, unsure=0, unsure_other=0, low=low, high=low)
    assert same.weigh("negative", judge).state == "negative"


def test_evidence_threshold_and_bad_input():
    assert set(RARE_CODES) >= {"MYO", "MOB", "EBO", "KSC", "EOS", "BAS", "PMO", "PMB"}
    assert evidence_threshold("EBO", min_confidence=0.5) == RARE_CONFIDENCE > 0.5
    assert evidence_threshold("NGS", min_confidence=0.5) == 0.5
    assert evidence_threshold("MYO", min_confidence=0.95) == 0.95  # never below the review threshold
    with pytest.raises(InputError, match="rare_confidence"):
        evidence_threshold("MYO", min_confidence=0.5, rare_confidence=1.5)
    with pytest.raises(InputError, match="confident"):
        Counting({"EBO": 2}, confident={"EBO": 3})
    with pytest.raises(InputError, match="calls_all"):
        Counting({"EBO": 2}, calls_all={"EBO": 1})
    with pytest.raises(InputError, match="unsure"):
        count_differential({"EBO": 2}, unsure={"EBO": 3})
    # cp_count_estimate is cp_estimate on the counts themselves.
    assert cp_count_estimate(8, 190, numerator=("EBO",)) == cp_estimate({"NGS": 190, "EBO": 8}, ("EBO",))


def _summarise(cells: list[CellResult], **cfg) -> dict:
    """The engine's own summary of given cells (no model needed), as in test_report."""
    eng = AnalysisEngine.__new__(AnalysisEngine)
    eng.config = AnalysisConfig(**cfg)
    eng.classifier = SimpleNamespace(sha256="f" * 64, path=Path("model.hemo"), labels=["NGS"], um_per_px=0.225,
                                     input_size=112)
    fields = [FieldResult(name="f.png", status="analysed", um_per_px=0.0725, um_source="option",
                          n_detected=len(cells), n_classified=len(cells))]
    res = eng._summarise(SampleSource(path=Path("/data/s"), fields=[FieldSource("f.png", Path("f.png"))]),
                         fields, cells)
    res["_cells"] = cells
    res["provenance"] = {}
    return res


def _cells(spec: list[tuple[str, float, int]]) -> list[CellResult]:
    out = []
    for call, p, n in spec:
        for _ in range(n):
            k = len(out) + 1
            out.append(CellResult(id=k, field="f.png", bbox=(0, 0, 9, 9), centroid=(4.0, 4.0), call=call,
                                  confidence=p, referred=p < 0.5, top=[(call, p)], detection_score=0.9))
    return out


def test_report_lists_unsure_cells_with_their_reasons():
    # The BCCD situation in miniature: confident common cells, eight smudge-cell and
    # three NRBC calls at 0.6-0.7 (counted, unconfirmed), two cells the model cannot place.
    cells = _cells([("NGS", 0.97, 120), ("LYT", 0.95, 60), ("KSC", 0.7, 8), ("EBO", 0.6, 3), ("NGS", 0.4, 1),
                    ("EBO", 0.45, 1)])
    res = _summarise(cells, calibration="none")
    flags = {f["id"]: f for f in res["flags"]}
    # The four EBO calls (three counted at 0.6, one referred) decide it: no confident one, so the other
    # unsure cells cannot matter.
    assert flags["nrbc"]["state"] == "indeterminate" and flags["nrbc"]["review_cells"] == 4
    assert not [k for k, f in flags.items() if f["state"] == "positive"]
    kinds = {r["cell_id"]: r["kind"] for r in res["review"]}
    assert sorted(kinds.values()).count("rare_unconfirmed") == 11
    assert sorted(kinds.values()).count("below_confidence") == 2
    assert len(res["review"]) == res["counts"]["n_review"] == 13
    assert res["counts"]["n_unsure"] == 11 and res["counts"]["n_referred"] == 2
    # Every low-confidence cell is listed, and only those: the confident common cells are not.
    assert set(kinds) == {c.id for c in cells if (c.confidence < RARE_CONFIDENCE and c.call != "NGS")
                          or c.confidence < 0.5}
    reason = next(r["reason"] for r in res["review"] if r["call"] == "KSC")
    assert "0.70" in reason and f"{RARE_CONFIDENCE:g}" in reason
    rows = {r["code"]: r for r in res["differential"]["rows"]}
    assert rows["KSC"]["unsure"] == 8 and rows["EBO"]["unsure"] == 3 and rows["NGS"]["unsure"] == 0
    assert all(c["unsure"] == (c["id"] in kinds) for c in res["cells"])
    page = render_html(res)
    assert "needs review: 4 cells" in page and "rare-class calls without the confidence" in page
    assert reason.split(":")[0] in page


def test_report_confident_rare_calls_count_and_few_ones_are_listed():
    cells = _cells([("NGS", 0.97, 120), ("LYT", 0.95, 60), ("EBO", 0.97, 8)])
    res = _summarise(cells, calibration="none")
    assert {f["id"]: f for f in res["flags"]}["nrbc"]["state"] == "positive" and res["review"] == []
    # Two confident NRBC calls: indeterminate, and both cells are listed to be confirmed.
    res = _summarise(_cells([("NGS", 0.97, 120), ("LYT", 0.95, 60), ("EBO", 0.97, 2)]), calibration="none")
    assert {f["id"]: f for f in res["flags"]}["nrbc"]["state"] == "indeterminate"
    assert [r["kind"] for r in res["review"]] == ["few_confident"] * 2
    # A laxer evidence threshold (the option) accepts the 0.7 calls.
    cells = _cells([("NGS", 0.97, 120), ("LYT", 0.95, 60), ("EBO", 0.7, 8)])
    assert {f["id"]: f for f in _summarise(cells, calibration="none", rare_confidence=0.6)["flags"]}[
        "nrbc"]["state"] == "positive"


def test_a_rare_call_is_confident_on_its_group_probability():
    from hemotwin.diagnosis.flags import evidence_probability, is_confident

    kw = {"min_confidence": 0.5}
    # Split between two blast classes: a confident blast (0.99 >= 0.9) although MYO alone is 0.70.
    assert evidence_probability("MYO", [("MYO", 0.70), ("MOB", 0.29), ("LYT", 0.01)]) == pytest.approx(0.99)
    assert is_confident("MYO", 0.70, [("MYO", 0.70), ("MOB", 0.29), ("LYT", 0.01)], **kw)
    # Split between a blast and a lymphocyte (the twin's CLL samples): not evidence of blasts.
    assert not is_confident("MYO", 0.70, [("MYO", 0.70), ("LYT", 0.29), ("MOB", 0.01)], **kw)
    # Rare classes outside a group stand alone; common classes need only the review threshold.
    assert not is_confident("EBO", 0.85, [("EBO", 0.85), ("LYT", 0.15)], **kw)
    assert is_confident("EBO", 0.95, [("EBO", 0.95)], **kw)
    assert is_confident("NGS", 0.60, [("NGS", 0.60), ("NGB", 0.40)], **kw)
    # Below the review threshold nothing is confident, whatever its group.
    assert not is_confident("MYO", 0.45, [("MYO", 0.45), ("MOB", 0.45)], **kw)
