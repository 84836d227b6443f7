"""IPSS-R points and categories at every boundary (docs/clinical_rules.md §6; Greenberg et al. 2012)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hemotwin.prognosis.ipssr import IPSSR_CATEGORIES, anc_points, blast_points, hb_points, ipssr, plt_points

BLASTS = [(0, 0), (2, 0), (2.1, 1), (4.9, 1), (5, 2), (10, 2), (10.1, 3), (19, 3)]
HB = [(12, 0), (10, 0), (9.99, 1), (8, 1), (7.99, 1.5)]
PLT = [(300, 0), (100, 0), (99.9, 0.5), (50, 0.5), (49.9, 1)]
ANC = [(2, 0), (0.8, 0), (0.79, 0.5)]


@pytest.mark.parametrize(("fn", "value", "points"),
                         [(blast_points, v, p) for v, p in BLASTS] + [(hb_points, v, p) for v, p in HB]
                         + [(plt_points, v, p) for v, p in PLT] + [(anc_points, v, p) for v, p in ANC])
def test_points_boundaries(fn, value, points):
    assert fn(np.array([value]))[0] == points


@pytest.mark.parametrize(("total_inputs", "score", "category"), [
    (("very_good", 1, 12, 200, 2), 0.0, "Very Low"),
    (("good", 2.1, 12, 200, 2), 2.0, "Low"),
    (("very_good", 2.1, 9, 200, 2), 2.0, "Low"),
    (("good", 1, 9.9, 60, 2), 2.5, "Low"),
    (("good", 4, 9.9, 200, 2), 3.0, "Low"),
    (("intermediate", 2.1, 12, 60, 0.5), 4.0, "Intermediate"),
    (("good", 5, 9.9, 50, 0.8), 4.5, "Intermediate"),
    (("poor", 5, 12, 60, 2), 5.5, "High"),
    (("very_poor", 2.1, 9.9, 200, 2), 6.0, "High"),
    (("very_poor", 11, 7, 20, 0.1), 10.0, "Very High"),
    (("good", 1.5, 12, 99, 2), 1.5, "Very Low"),
])
def test_scores_and_right_closed_categories(total_inputs, score, category):
    cyto, b, h, p, a = total_inputs
    r = ipssr(cyto_group=cyto, bm_blast=b, hb=h, plt=p, anc=a)
    assert r.score == score and r.category == category and r.complete
    assert any("total" in x for x in r.rules)


def test_missing_input_gives_range_and_keeps_a_certain_category():
    r = ipssr(cyto_group="very_poor", bm_blast=11, hb=7, plt=20, anc=None)
    assert r.score is None and not r.complete
    assert (r.score_best, r.score_worst) == (9.5, 10.0)
    assert r.category == "Very High"  # every ANC value gives Very High
    r2 = ipssr(cyto_group=None, bm_blast=1, hb=12, plt=200, anc=2)
    assert r2.category is None and (r2.score_best, r2.score_worst) == (0.0, 4.0)
    assert any("cytogenetic" in m for m in r2.missing)


def test_categories_are_the_published_five():
    assert IPSSR_CATEGORIES == ("Very Low", "Low", "Intermediate", "High", "Very High")
    assert math.isnan(blast_points(np.array([math.nan]))[0])
