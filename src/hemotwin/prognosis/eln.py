"""ELN 2022 genetic risk and ELN 2024 genetic risk for less-intensive therapy.

ELN 2022: Döhner et al., Blood 2022;140:1345, Table 6 (docs/clinical_rules.md §3). ELN 2024: Döhner et
al., Blood 2024 (docs/clinical_rules.md §4).

Both are ordered rule lists ("levels"): the first level with a lesion present decides the category.
Inputs are three-valued (1 present, 0 absent, NaN unknown). Unknown lesions are listed in
``missing``; the categories they still allow are worked out level by level, and when more than one
is possible the result is *undetermined*: no category, the possible ones and the estimate with every
unknown lesion taken as absent in ``reason``, and the unknown inputs (karyotype, genes) that decide
it in ``deciding_inputs``.

Acute promyelocytic leukaemia (t(15;17)/PML::RARA) is outside both classifications (ELN 2022 leaves
APL to its own risk assessment, the Sanz score by WBC and platelets; docs/clinical_rules.md §3): it
gets no group (``applicable=False``).

ELN 2022 precedence (each step cites Table 6 and its notes, docs/clinical_rules.md §3):

1. favorable: t(8;21) / inv(16), t(16;16) (core-binding factor; note a: KIT/FLT3 do not change it);
2. adverse: t(6;9), KMT2A-r other than t(9;11) (note e: KMT2A-PTD is not KMT2A-r), t(9;22), t(8;16),
   inv(3)/t(3;3), t(3q26.2;v), -5/del(5q), -7, -17/abn(17p), complex (note f: hyperdiploid trisomies
   excluded, as computed by the karyotype parser), monosomal (note g). This level sits above NPM1
   (note b: NPM1 with adverse cytogenetics is adverse) and above t(9;11), since note (d) gives
   t(9;11) precedence over adverse *gene mutations* only *(confirm)*;
3. intermediate: t(9;11)(p21.3;q23.3) (note d: precedence over adverse gene mutations);
4. adverse: TP53 VAF >= 10 % (note i; note h exempts only the MR genes in favorable subtypes, so TP53
   overrides NPM1/CEBPA) *(confirm)*;
5. favorable: NPM1 without FLT3-ITD (note b); 6. intermediate: NPM1 with FLT3-ITD;
7. favorable: bZIP in-frame CEBPA (note c);
8. adverse: ASXL1, BCOR, EZH2, RUNX1, SF3B1, SRSF2, STAG2, U2AF1, ZRSR2 (note h);
9. intermediate: FLT3-ITD with NPM1 wild type and no adverse lesion;
10. intermediate: everything else.

ELN 2024 (less-intensive; docs/clinical_rules.md §4): adverse TP53 mutated; favorable DDX41; (azacitidine +
ivosidenib only) favorable IDH1 regardless of signalling mutations; intermediate FLT3-ITD, NRAS or
KRAS; favorable otherwise (NPM1, IDH2 or other abnormalities without FLT3-ITD/NRAS/KRAS/TP53).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from hemotwin.prognosis.mutations import ELN2022_MR_GENES, k_and, k_not, k_or
from hemotwin.prognosis.patient import ScoreResult

ELN_CATEGORIES: tuple[str, ...] = ("Favorable", "Intermediate", "Adverse")
_T6 = "ELN 2022 Table 6"
_T24 = "ELN 2024 less-intensive; docs/clinical_rules.md §4"

Features = dict[str, np.ndarray]


@dataclass(frozen=True)
class Rule:
    """One lesion of a level: its label (with the source), the features it reads and how it combines them.

    ``inputs`` are feature keys (``K_*`` karyotype flags, ``MUT_<GENE>``, ``FLT3_ITD`` ...); an
    unknown one is what a user must supply to settle the rule. ``mask`` defaults to the first input.
    """

    label: str
    inputs: tuple[str, ...]
    combine: Callable[[Features], np.ndarray] | None = None

    def mask(self, F: Features) -> np.ndarray:
        """1 where the lesion is present, 0 absent, NaN unknown."""
        return self.combine(F) if self.combine is not None else _get(F, self.inputs[0])


@dataclass(frozen=True)
class Level:
    """Rules of equal precedence that give one category."""

    category: str
    rules: tuple[Rule, ...]


def _get(F: Features, key: str) -> np.ndarray:
    if key in F:
        return np.asarray(F[key], dtype=float)
    n = len(next(iter(F.values())))
    return np.full(n, math.nan)


def _always(F: Features) -> np.ndarray:
    return np.ones(len(next(iter(F.values()))))


ELN2022_LEVELS: tuple[Level, ...] = (
    Level("Favorable", (
        Rule(f"t(8;21)(q22;q22.1)/RUNX1::RUNX1T1 ({_T6}, favorable, note a)", ("K_T8_21",)),
        Rule(f"inv(16)(p13.1q22) or t(16;16)(p13.1;q22)/CBFB::MYH11 ({_T6}, favorable, note a)",
             ("K_INV16_T16_16",)),
    )),
    Level("Adverse", (
        Rule(f"t(6;9)(p23.3;q34.1)/DEK::NUP214 ({_T6}, adverse)", ("K_T6_9",)),
        Rule(f"t(v;11q23.3)/KMT2A-rearranged ({_T6}, adverse, note e)", ("K_KMT2A_OTHER",)),
        Rule(f"t(9;22)(q34.1;q11.2)/BCR::ABL1 ({_T6}, adverse)", ("K_T9_22",)),
        Rule(f"t(8;16)(p11.2;p13.3)/KAT6A::CREBBP ({_T6}, adverse)", ("K_T8_16",)),
        Rule(f"inv(3)(q21.3q26.2) or t(3;3)(q21.3;q26.2)/GATA2, MECOM ({_T6}, adverse)", ("K_INV3_T3_3",)),
        Rule(f"t(3q26.2;v)/MECOM-rearranged ({_T6}, adverse)", ("K_MECOM_3Q26",)),
        Rule(f"-5 or del(5q) ({_T6}, adverse)", ("K_MINUS5", "K_DEL5Q"),
             lambda F: k_or(_get(F, "K_MINUS5"), _get(F, "K_DEL5Q"))),
        Rule(f"-7 ({_T6}, adverse)", ("K_MINUS7",)),
        Rule(f"-17/abn(17p) ({_T6}, adverse)", ("K_MINUS17_ABN17P",)),
        Rule(f"complex karyotype ({_T6}, adverse, note f)", ("K_COMPLEX",)),
        Rule(f"monosomal karyotype ({_T6}, adverse, note g)", ("K_MONOSOMAL",)),
    )),
    Level("Intermediate", (
        Rule(f"t(9;11)(p21.3;q23.3)/MLLT3::KMT2A ({_T6}, intermediate, note d)", ("K_T9_11",)),
    )),
    Level("Adverse", (
        Rule(f"mutated TP53 with VAF >= 10 % ({_T6}, adverse, note i)", ("TP53_GE10",)),
    )),
    Level("Favorable", (
        Rule(f"mutated NPM1 without FLT3-ITD ({_T6}, favorable, note b)", ("MUT_NPM1", "FLT3_ITD"),
             lambda F: k_and(_get(F, "MUT_NPM1"), k_not(_get(F, "FLT3_ITD")))),
    )),
    Level("Intermediate", (
        Rule(f"mutated NPM1 with FLT3-ITD ({_T6}, intermediate, note b)", ("MUT_NPM1", "FLT3_ITD"),
             lambda F: k_and(_get(F, "MUT_NPM1"), _get(F, "FLT3_ITD"))),
    )),
    Level("Favorable", (
        Rule(f"bZIP in-frame mutated CEBPA ({_T6}, favorable, note c)", ("CEBPA_BZIP",)),
    )),
    Level("Adverse", tuple(Rule(f"mutated {g} ({_T6}, adverse, note h)", (f"MUT_{g}",)) for g in ELN2022_MR_GENES)),
    Level("Intermediate", (
        Rule(f"wild-type NPM1 with FLT3-ITD, no adverse-risk lesion ({_T6}, intermediate)", ("FLT3_ITD",)),
    )),
    Level("Intermediate", (
        Rule(f"no favorable- or adverse-risk lesion found ({_T6}, intermediate)", (), _always),
    )),
)


def eln2024_levels(regimen: Literal["venetoclax", "ivosidenib"] = "venetoclax") -> tuple[Level, ...]:
    """ELN 2024 levels; ``regimen="ivosidenib"`` (azacitidine + ivosidenib) adds the IDH1 rule (§4)."""
    levels = [
        Level("Adverse", (Rule(f"mutated TP53 ({_T24}, adverse) (VAF threshold: confirm)", ("MUT_TP53",)),)),
        Level("Favorable", (Rule(f"mutated DDX41 ({_T24}, favorable; near-heterozygous VAF: prompt a germline "
                                 "work-up)", ("MUT_DDX41",)),)),
    ]
    if regimen == "ivosidenib":
        levels.append(Level("Favorable", (Rule(f"mutated IDH1, TP53 wild type, azacitidine + ivosidenib, regardless "
                                               f"of signalling mutations ({_T24}, favorable)", ("MUT_IDH1",)),)))
    levels += [
        Level("Intermediate", (
            Rule(f"FLT3-ITD ({_T24}, intermediate)", ("FLT3_ITD",)),
            Rule(f"mutated NRAS ({_T24}, intermediate)", ("MUT_NRAS",)),
            Rule(f"mutated KRAS ({_T24}, intermediate)", ("MUT_KRAS",)),
        )),
        Level("Favorable", (
            Rule(f"mutated NPM1, FLT3-ITD negative, NRAS/KRAS/TP53 wild type ({_T24}, favorable)", ("MUT_NPM1",)),
            Rule(f"mutated IDH2, FLT3-ITD negative, NRAS/KRAS/TP53 wild type ({_T24}, favorable)", ("MUT_IDH2",)),
            Rule(f"other abnormalities, FLT3-ITD negative, NRAS/KRAS/TP53 wild type ({_T24}, favorable)", (),
                 _always),
        )),
    ]
    return tuple(levels)


def evaluate_levels(levels: tuple[Level, ...], F: Features, *, apl: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Vectorised first-match over the levels.

    The decision takes every unknown lesion as absent (features NaN -> 0 before the rules combine
    them, so "NPM1 without FLT3-ITD" with FLT3 unknown counts as without); the same rules evaluated
    in three-valued logic give the categories the unknown lesions still allow: walking down the
    levels, every level that holds or might hold adds its category, until one surely holds. The
    category is *determined* when only one is possible.

    Parameters
    ----------
    levels
        The ordered levels (:data:`ELN2022_LEVELS` or :func:`eln2024_levels`).
    F
        Feature arrays (1.0 / 0.0 / NaN).
    apl
        True where the patient has APL (t(15;17)/PML::RARA): outside the classification.

    Returns
    -------
    dict
        ``level`` (index of the deciding level with unknowns absent), ``category`` (its index into
        :data:`ELN_CATEGORIES`), ``possible`` (categories x n booleans), ``determined`` and
        ``complete`` (one category possible; False for APL), ``applicable``, ``reach`` (levels x n:
        still undecided before the level), ``decide`` and ``masks`` (per level, per rule: the
        decision masks and the three-valued masks, for explanations).
    """
    F0 = {k: np.nan_to_num(np.asarray(v, dtype=float), nan=0.0) for k, v in F.items()}
    decide = [[r.mask(F0) for r in lev.rules] for lev in levels]
    masks = [[r.mask(F) for r in lev.rules] for lev in levels]
    n = len(decide[0][0])
    level = np.full(n, len(levels) - 1)
    decided = np.zeros(n, dtype=bool)
    cat_of = np.array([ELN_CATEGORIES.index(lev.category) for lev in levels])
    for j, ms in enumerate(decide):
        yes = (np.vstack(ms) == 1.0).any(axis=0) & ~decided
        level[yes] = j
        decided |= yes
    category = cat_of[level]
    possible = np.zeros((len(ELN_CATEGORIES), n), dtype=bool)
    reach = np.zeros((len(levels), n), dtype=bool)
    open_ = np.ones(n, dtype=bool)
    for j, ms in enumerate(masks):
        a = np.vstack(ms)
        surely = (a == 1.0).any(axis=0)
        maybe = np.isnan(a).any(axis=0)
        reach[j] = open_
        possible[cat_of[j]] |= open_ & (surely | maybe)
        open_ &= ~surely
    applicable = np.ones(n, dtype=bool) if apl is None else ~np.asarray(apl, dtype=bool)
    determined = (possible.sum(axis=0) == 1) & applicable
    return {"level": level, "category": category, "possible": possible, "determined": determined,
            "complete": determined, "applicable": applicable, "reach": reach, "decide": decide, "masks": masks}


def input_label(key: str, *, karyotype: str = "karyotype") -> str:
    """The input behind a feature key: ``K_*`` -> the karyotype, ``MUT_NPM1`` -> NPM1, ``FLT3_ITD`` -> FLT3."""
    if key.startswith("K_"):
        return karyotype
    if key.startswith("MUT_"):
        return key[4:]
    return {"FLT3_ITD": "FLT3", "TP53_GE10": "TP53", "CEBPA_BZIP": "CEBPA"}.get(key, key)


def _possible_text(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" or {names[-1]}"


def eln_statuses(name: str, levels: tuple[Level, ...], F: Features, ev: dict[str, np.ndarray],
                 rows: Sequence[int] | np.ndarray, karyotype: Sequence[str]) -> list[tuple[str, list[str]]]:
    """``(reason, deciding inputs)`` of each row; ``("", [])`` where the category is determined.

    The reason says why the patient is outside the classification (APL), or which categories the
    unknown lesions still allow and which one taking them as absent gives. An input decides when a
    rule it feeds is unknown at a level the patient can still reach and that does not surely hold
    already; they come in the order of the levels (the karyotype first where it counts: the first
    levels read it). ``karyotype`` names the karyotype of each row (e.g. ``"karyotype (unreadable)"``).
    """
    rows = np.asarray(rows, dtype=np.intp)
    # Everything the loop reads, as plain lists of the selected rows (numpy scalar access is slow).
    reach = ev["reach"][:, rows].T.tolist()
    unknown = [[np.isnan(m[rows]).tolist() for m in ms] for ms in ev["masks"]]
    surely = [np.vstack([m[rows] == 1.0 for m in ms]).any(axis=0).tolist() for ms in ev["masks"]]
    keys = sorted({k for lev in levels for r in lev.rules for k in r.inputs})
    key_unknown = {k: np.isnan(_get(F, k)[rows]).tolist() for k in keys}
    possible = ev["possible"][:, rows].T.tolist()
    estimate = ev["category"][rows].tolist()
    determined, applicable = ev["determined"][rows].tolist(), ev["applicable"][rows].tolist()
    out: list[tuple[str, list[str]]] = []
    for j in range(len(rows)):
        if not applicable[j]:
            out.append((apl_reason(name), []))
            continue
        if determined[j]:
            out.append(("", []))
            continue
        deciding: list[str] = []
        for lv, lev in enumerate(levels):
            if not reach[j][lv]:
                break
            if surely[lv][j]:
                continue  # the level surely holds: its other, unknown lesions change nothing
            for r, unk in zip(lev.rules, unknown[lv], strict=True):
                if not unk[j]:
                    continue
                for key in r.inputs:
                    label = input_label(key, karyotype=karyotype[j])
                    if key_unknown[key][j] and label not in deciding:
                        deciding.append(label)
        names = [c for k, c in enumerate(ELN_CATEGORIES) if possible[j][k]]
        reason = (f"{_possible_text(names)} possible ({ELN_CATEGORIES[estimate[j]]} if every unknown lesion is "
                  "absent)")
        out.append((reason, deciding))
    return out


def eln_status(name: str, levels: tuple[Level, ...], F: Features, ev: dict[str, np.ndarray], i: int, *,
               karyotype: str = "karyotype") -> tuple[str, list[str]]:
    """``(reason, deciding inputs)`` of row ``i`` (see :func:`eln_statuses`)."""
    return eln_statuses(name, levels, F, ev, [i], [karyotype])[0]


def apl_reason(name: str) -> str:
    """Why an APL is not given an ELN group (docs/clinical_rules.md §3 for ELN 2022, §4 for ELN 2024)."""
    section = "§4" if name == "ELN 2024" else "§3"
    return (f"acute promyelocytic leukaemia (APL, t(15;17)/PML::RARA) is outside the {name} genetic risk "
            f"classification (docs/clinical_rules.md {section}); APL risk is assessed by the Sanz score "
            "(WBC, platelets)")


def apl_mask(F: Features) -> np.ndarray:
    """True where t(15;17)/PML::RARA is present (APL); unknown counts as absent."""
    return _get(F, "K_T15_17") == 1.0


def _notes_eln2022(F: Features, i: int, level: int) -> list[str]:
    """The footnotes of Table 6 that explain this patient's result (docs/clinical_rules.md §3)."""
    v = lambda key: _get(F, key)[i]  # noqa: E731
    notes = []
    fav_cbf, adverse_cyto, t911 = level == 0, level == 1, level == 2
    if fav_cbf and (v("MUT_KIT") == 1 or v("MUT_FLT3") == 1):
        notes.append(f"concurrent KIT and/or FLT3 mutation does not change core-binding-factor risk ({_T6} note a)")
    if adverse_cyto and v("MUT_NPM1") == 1:
        notes.append(f"NPM1-mutated AML with adverse-risk cytogenetics is adverse ({_T6} note b)")
    mr = [g for g in ELN2022_MR_GENES if v(f"MUT_{g}") == 1]
    if t911 and (mr or v("TP53_GE10") == 1):
        notes.append(f"t(9;11) takes precedence over concurrent adverse-risk gene mutations ({_T6} note d)")
    if mr and ELN2022_LEVELS[level].category == "Favorable":
        notes.append(f"myelodysplasia-related mutation(s) {', '.join(mr)} co-occur with a favorable-risk subtype: "
                     f"not adverse ({_T6} note h)")
    if v("KMT2A_PTD") == 1:
        notes.append(f"KMT2A partial tandem duplication is not a KMT2A rearrangement: not adverse ({_T6} note e)")
    if v("K_HYPERDIPLOID_TRISOMIES_ONLY") == 1:
        notes.append(f"hyperdiploid karyotype with trisomies only is not complex ({_T6} note f)")
    if v("MUT_TP53") == 1 and v("TP53_GE10") == 0:
        notes.append(f"TP53 mutated at VAF < 10 %: not adverse ({_T6} note i)")
    if v("MUT_CEBPA") == 1 and v("CEBPA_BZIP") == 0:
        notes.append(f"CEBPA mutation outside the bZIP in-frame class: not favorable ({_T6} note c)")
    if v("FLT3_ITD") == 1 and level == 0:
        notes.append(f"FLT3-ITD does not change core-binding-factor risk ({_T6} note a)")
    return notes


def levels_result(name: str, levels: tuple[Level, ...], F: Features, ev: dict[str, np.ndarray], i: int,
                  notes: list[str] | None = None, *, karyotype: str = "karyotype") -> ScoreResult:
    """The :class:`ScoreResult` of row ``i`` of :func:`evaluate_levels`.

    ``karyotype`` names the karyotype among the deciding inputs (e.g. ``"karyotype (unreadable)"``).
    """
    reason, deciding = eln_status(name, levels, F, ev, i, karyotype=karyotype)
    if not ev["applicable"][i]:
        rule = f"t(15;17)(q24.1;q21.2)/PML::RARA present: acute promyelocytic leukaemia, not classified by {name}"
        return ScoreResult(name=name, determined=False, applicable=False, reason=reason, rules=[rule],
                           complete=False, notes=notes or [])
    lev = int(ev["level"][i])
    fired = [r.label for r, m in zip(levels[lev].rules, ev["decide"][lev], strict=True) if m[i] == 1.0]
    missing = []
    for j in range(lev + 1):
        for r, m in zip(levels[j].rules, ev["masks"][j], strict=True):
            if math.isnan(m[i]):
                missing.append(f"unknown: {r.label.split(' (')[0]} (taken as absent)")
    determined = bool(ev["determined"][i])
    estimate = levels[lev].category
    return ScoreResult(name=name, category=estimate if determined else None, category_estimate=estimate,
                       determined=determined, reason=reason, deciding_inputs=deciding, rules=fired,
                       missing=missing, complete=bool(ev["complete"][i]), notes=notes or [])


def eln2022_arrays(F: Features) -> dict[str, np.ndarray]:
    """Vectorised ELN 2022 (see :func:`evaluate_levels`); APL is outside it (docs/clinical_rules.md §3)."""
    return evaluate_levels(ELN2022_LEVELS, F, apl=apl_mask(F))


def eln2022_result(F: Features, ev: dict[str, np.ndarray], i: int, *, karyotype: str = "karyotype") -> ScoreResult:
    """ELN 2022 result of row ``i`` with the Table 6 footnotes that apply."""
    notes = _notes_eln2022(F, i, int(ev["level"][i])) if ev["applicable"][i] else []
    return levels_result("ELN 2022", ELN2022_LEVELS, F, ev, i, notes, karyotype=karyotype)


def eln2024_arrays(F: Features, *, regimen: Literal["venetoclax", "ivosidenib"] = "venetoclax"
                   ) -> dict[str, np.ndarray]:
    """Vectorised ELN 2024 less-intensive (see :func:`evaluate_levels`); APL is outside it."""
    return evaluate_levels(eln2024_levels(regimen), F, apl=apl_mask(F))


def eln2024_result(F: Features, ev: dict[str, np.ndarray], i: int, *,
                   regimen: Literal["venetoclax", "ivosidenib"] = "venetoclax",
                   karyotype: str = "karyotype") -> ScoreResult:
    """ELN 2024 result of row ``i``."""
    notes = [f"for venetoclax + HMA/LDAC or azacitidine + ivosidenib; not for patients previously treated with "
             f"an HMA ({_T24})"]
    return levels_result("ELN 2024", eln2024_levels(regimen), F, ev, i, notes, karyotype=karyotype)
