"""Property tests: the karyotype parser never raises and always returns a valid, consistent record.

Three sources of input: arbitrary unicode text; ISCN-like strings built from a token grammar with
typing noise (case, spaces, missing brackets, wrong separators); and real corpus strings damaged by
random edits. ``HEMOTWIN_FUZZ_EXAMPLES`` raises the number of examples for a long run outside CI.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hemotwin.prognosis.cytogenetics import KaryotypeFeatures
from hemotwin.prognosis.karyotype import Karyotype, parse_karyotype
from hemotwin.prognosis.karyotype_features import karyotype_features

N_EXAMPLES = int(os.environ.get("HEMOTWIN_FUZZ_EXAMPLES", "250"))
FUZZ = settings(max_examples=N_EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

CHROMS = [str(i) for i in range(1, 23)] + ["X", "Y", "x", "y", "?", "0", "23", "99"]
BANDS = ["q22", "q22.1", "p13", "p21.3", "q23.3", "q26.2", "q10", "p10", "q13q33", "q11q13", "p13q22", "q21q26",
         "q2?", "pter", "qter", "cen", "?", "q21~q23", "q1?3", "p11.2", ""]
STRUCT = ["t", "inv", "del", "add", "der", "dup", "ins", "i", "idic", "dic", "r", "rob", "trc", "fra", "hsr", "tas",
          "psu dic", "ider", "xyz"]
SEPS = [",", ", ", ";", " ", ",,", "/", "//", "."]


@st.composite
def structural(draw: st.DrawFn, depth: int = 0) -> str:
    kind = draw(st.sampled_from(STRUCT))
    n = draw(st.integers(1, 3))
    chroms = ";".join(draw(st.lists(st.sampled_from(CHROMS), min_size=n, max_size=n)))
    if draw(st.booleans()):
        chroms += draw(st.sampled_from(["q", "p", ""]))
    bands = ";".join(draw(st.lists(st.sampled_from(BANDS), min_size=1, max_size=n)))
    tok = f"{kind}({chroms})"
    if draw(st.booleans()):
        tok += f"({bands})"
    if kind == "der" and depth < 2:
        tok += "".join(draw(st.lists(structural(depth + 1), max_size=2)))
    return tok


@st.composite
def abnormality(draw: st.DrawFn) -> str:
    choice = draw(st.integers(0, 5))
    if choice == 0:
        tok = draw(st.sampled_from(["+", "-", ""])) + draw(st.sampled_from(CHROMS))
    elif choice == 1:
        tok = draw(st.sampled_from(["+", "-", ""])) + draw(st.sampled_from(["", "2", "1~3"])) + "mar" + draw(
            st.sampled_from(["", "1", "2"]))
    elif choice == 2:
        tok = draw(st.sampled_from(["dmin", "2~30dmin", "hsr", "+r", "idem", "sl", "sdl", "sdl1", "idemx2", "inc",
                                    "cp", "or", "c", "x2", "9qh+", "mos", "5q-", "i17q", "trisomy 8", "normal",
                                    "complex", "failed", "?", ">3"]))
    else:
        tok = draw(st.sampled_from(["", "+", "-", "?"])) + draw(structural())
    tok += draw(st.sampled_from(["", "", "x2", "c", "?", "x2c"]))
    return tok


@st.composite
def clone(draw: st.DrawFn) -> str:
    modal = draw(st.sampled_from(["46", "47", "45", "45~47", "92<4n>", "46<2n>", "69", "", "4", "460", "46-48"]))
    sex = draw(st.sampled_from(["XY", "XX", "X", "XXY", "xy", "", "?"]))
    abns = draw(st.lists(abnormality(), max_size=6))
    parts = [p for p in (modal, sex, *abns) if p]
    sep = draw(st.sampled_from(SEPS[:4]))
    text = sep.join(parts)
    cells = draw(st.sampled_from(["[20]", "[cp12]", "[5", "(8)", "20]", "", "[]", "[cp]", "[2~4]"]))
    return text + cells


@st.composite
def iscn_like(draw: st.DrawFn) -> str:
    clones = draw(st.lists(clone(), min_size=1, max_size=4))
    text = clones[0]
    for c in clones[1:]:
        text += draw(st.sampled_from(["/", "//", ",", " / "])) + c
    if draw(st.integers(0, 4)) == 0:
        text += draw(st.sampled_from([".ish del(5)(q31)(EGR1-)", " nuc ish(ABL1,BCR)x2[200]", " arr 5q(1_2)x1"]))
    case = draw(st.sampled_from(["keep", "lower", "upper"]))
    return text.lower() if case == "lower" else text.upper() if case == "upper" else text


def _corpus() -> list[str]:
    with Path(__file__).with_name("karyotype_corpus.tsv").open(encoding="utf-8", newline="") as fh:
        return [r[0] for r in csv.reader(fh, delimiter="\t") if r and not r[0].startswith("#")][1:]


@st.composite
def damaged(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(_corpus()))
    for _ in range(draw(st.integers(1, 4))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.integers(0, 2))
        if op == 0:
            text = text[:pos] + text[pos + 1:]
        elif op == 1:
            text = text[:pos] + draw(st.sampled_from(list("()[];,/~?+-x. \t\u00d7\u2212"))) + text[pos:]
        else:
            text = text[:pos] + text[pos:][::-1]
    return text


def check(text: object) -> None:
    """The invariants every input must satisfy."""
    k = parse_karyotype(text)
    assert isinstance(k, Karyotype)
    f = karyotype_features(text)
    assert isinstance(f, KaryotypeFeatures)
    KaryotypeFeatures.model_validate(f.model_dump())  # a valid contract record
    assert not any("internal" in w for w in f.warnings), f.warnings
    assert f.evaluable == k.evaluable
    if k.status in ("normal", "abnormal"):
        n = f.n_abnormalities
        assert n is not None and f.ipssr_group is not None
        assert n >= (f.n_structural or 0) + (f.n_trisomies or 0) + (f.n_autosomal_monosomies or 0)
        assert f.normal is (n == 0) is (k.status == "normal")
        assert not f.complex or n >= 3
        assert not (f.complex and f.hyperdiploid_trisomies_only)
        assert not f.monosomal or f.n_autosomal_monosomies >= 1
        assert (f.ipssr_group == "very_poor") is (n >= 4)
        if n == 3:
            assert f.ipssr_group == "poor"
        if n == 0:
            assert f.ipssr_group == "good"
    elif not k.evaluable:
        assert f.normal is None and f.complex is None and f.n_abnormalities is None


@FUZZ
@given(st.text(max_size=300))
def test_arbitrary_unicode_never_raises(text: str) -> None:
    check(text)


@FUZZ
@given(iscn_like())
def test_iscn_like_grammar_never_raises(text: str) -> None:
    check(text)
    # Case never changes what is read.
    a = karyotype_features(text.lower()).model_dump(exclude={"text", "warnings"})
    b = karyotype_features(text.upper()).model_dump(exclude={"text", "warnings"})
    assert a == b


@FUZZ
@given(damaged())
def test_damaged_corpus_strings_never_raise(text: str) -> None:
    check(text)


@FUZZ
@given(st.one_of(st.none(), st.floats(), st.integers(), st.binary(max_size=20), st.lists(st.integers(), max_size=3)))
def test_non_string_values_never_raise(value: object) -> None:
    check(value)
