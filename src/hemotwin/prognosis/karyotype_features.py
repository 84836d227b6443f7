"""Cytogenetic features of a parsed karyotype: counts, ELN 2022 lesion flags and the IPSS-R group.

:func:`karyotype_features` turns a :class:`~hemotwin.prognosis.karyotype.Karyotype` (or the text,
parsed by :func:`~hemotwin.prognosis.karyotype.parse_karyotype`) into the
:class:`~hemotwin.prognosis.cytogenetics.KaryotypeFeatures` contract: counts (docs/clinical_rules.md §3
notes f, g; §10), the ELN 2022 lesion flags (§3), and the IPSS-R cytogenetic group (§6; Schanz et
al., JCO 2012). The band logic below reads breakpoints with the tolerance real reports need (a
low-resolution ``q2`` matches ``q23``; a derivative carries the rearrangements that formed it).

Features are cached by string, so scoring a cohort where the same karyotype recurs costs one
computation per distinct string. The module imports only the standard library and pydantic.

Examples
--------
>>> f = karyotype_features("46,xx,del(20)(q11q13)[20]")
>>> f.del20q, f.n_abnormalities, f.ipssr_group
(True, 1, 'good')
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from hemotwin.prognosis import _iscn
from hemotwin.prognosis.cytogenetics import KaryotypeFeatures
from hemotwin.prognosis.karyotype import AUTOSOMES, Abnormality, Breakpoint, Karyotype, parse_karyotype

__all__ = ["ipssr_cyto_group", "karyotype_features"]

_NOT_STRUCTURAL = frozenset({"+", "-", "mar", "unknown", "var"})


# ------------------------------------------------------------------------------------ band logic
def _events(a: Abnormality) -> Iterator[Abnormality]:
    """The abnormality and, for a derivative, every rearrangement that formed it."""
    yield a
    for c in a.components:
        yield from _events(c)


def _band_in(bp: Breakpoint, arm: str, majors: tuple[str, ...] | None) -> bool:
    """Arm + major band match with tolerance: 11q23 matches q23.3; a low-resolution 'q2' matches q23.

    ``majors`` None means any band of the arm.
    """
    if bp.arm != arm:
        return False
    if majors is None or bp.major is None or bp.major == "ter":
        return majors is None or bp.major is None
    got = bp.major
    if bp.band_to is not None:  # a range such as q21~q23 matches any band inside it
        lo, hi = got, bp.band_to.split(".", 1)[0]
        if _iscn.is_number(lo) and _iscn.is_number(hi) and len(lo) == len(hi) == 2:
            return any(int(lo) <= int(m) <= int(hi) for m in majors)
    return any(m == got or (len(got) < len(m) and m.startswith(got)) for m in majors)


def _bps_of(event: Abnormality, chrom: str) -> list[Breakpoint]:
    return [b for b in event.breakpoints if b.chromosome == chrom and (b.arm is not None or b.band == "cen")]


def _has_pair(a: Abnormality, spec: tuple[tuple[str, str, tuple[str, ...] | None], ...],
              kinds: tuple[str, ...] = ("t",), strict: bool = False) -> bool:
    """True if a rearrangement of ``kinds`` joins every (chromosome, arm, bands) of ``spec``.

    Without written bands ``t(8;21)`` matches (a common shorthand) unless ``strict``.
    """
    for ev in _events(a):
        if ev.kind not in kinds:
            continue
        chroms = list(ev.chromosomes)
        ok = True
        for chrom, arm, majors in spec:
            if chrom not in chroms:
                ok = False
                break
            chroms.remove(chrom)  # t(16;16) needs 16 twice
            bps = _bps_of(ev, chrom)
            if not bps:
                if strict:
                    ok = False
                    break
                continue
            if not any(_band_in(b, arm, majors) for b in bps):
                ok = False
                break
        if ok:
            return True
    return False


def _inv_with(a: Abnormality, chrom: str, need: tuple[tuple[str, tuple[str, ...] | None], ...]) -> bool:
    """An inversion of ``chrom`` whose bands include every (arm, majors) of ``need`` (or no bands written)."""
    for ev in _events(a):
        if ev.kind != "inv" or ev.chromosomes[:1] != (chrom,):
            continue
        bps = _bps_of(ev, chrom)
        if not bps or all(any(_band_in(b, arm, majors) for b in bps) for arm, majors in need):
            return True
    return False


def _breaks_at(a: Abnormality, chrom: str, arm: str, majors: tuple[str, ...] | None,
               kinds: frozenset[str]) -> bool:
    """A rearrangement of ``kinds`` with a written breakpoint on chrom/arm/majors.

    With ``majors`` given, the band must be written: t(11;19)(q?;p13) is not known to break at 11q23.
    """
    return any(
        ev.kind in kinds and any(
            _band_in(b, arm, majors) and (majors is None or b.major is not None) for b in _bps_of(ev, chrom)
        )
        for ev in _events(a)
    )


_REARRANGING = frozenset({"t", "ins", "dic", "trc", "rob", "tas", "inv"})


def _lost_arms(a: Abnormality) -> set[tuple[str, str]]:
    """Chromosome arms (partly) lost by a structural abnormality: the basis of del(5q), 17p loss ...

    ISCN meaning of each form: del/add remove the segment distal to the break; dic(A;B)(a;b) and
    idic(A)(a) keep the centromeric side and lose what is distal; i(Aq) / i(A)(q10) lose Ap; a
    derivative der(A)t(A;B)(a;b) keeps A's centromere, so it loses A distal to a; a whole-arm
    der(A;B)(q10;p10) keeps the arms named and loses the other ones.
    """
    lost: set[tuple[str, str]] = set()
    if a.sign == "+" or a.constitutional:
        return lost
    kind = a.kind
    if kind in ("del", "add"):
        chrom = a.chromosomes[0] if a.chromosomes else "?"
        arms = {b.arm for b in a.breakpoints if b.chromosome == chrom and b.arm}
        lost |= {(chrom, arm) for arm in arms}
    elif kind in ("dic", "idic"):
        lost |= {(b.chromosome, b.arm) for b in a.breakpoints if b.chromosome and b.arm}
    elif kind in ("i", "ider"):
        for b in a.breakpoints:
            if b.chromosome and b.arm and (b.major in (None, "10", "11")):
                lost.add((b.chromosome, "q" if b.arm == "p" else "p"))
    elif kind == "der":
        own = a.chromosomes[0] if a.chromosomes else "?"
        if len(a.chromosomes) >= 2:  # whole-arm derivative der(1;7)(q10;p10)
            for b in a.breakpoints:
                if b.chromosome and b.arm:
                    lost.add((b.chromosome, "q" if b.arm == "p" else "p"))
        for comp in a.components:
            if comp.kind in ("del", "add"):
                lost |= _lost_arms(comp)
            elif comp.kind in ("t", "ins", "dic"):
                lost |= {(b.chromosome, b.arm) for b in comp.breakpoints if b.chromosome == own and b.arm}
            elif comp.kind == "i":
                lost |= _lost_arms(comp)
    return lost


# ---------------------------------------------------------------------------------------- features
_KEY_CACHE: dict[int, tuple[Abnormality, tuple]] = {}


def _key_of(a: Abnormality) -> tuple:
    """:func:`_key`, memoised per record (records are shared through the token cache).

    The entry holds the record itself, so its ``id`` cannot be reused while the entry lives.
    """
    got = _KEY_CACHE.get(id(a))
    if got is not None and got[0] is a:
        return got[1]
    key = _key(a)
    if len(_KEY_CACHE) > 200_000:
        _KEY_CACHE.clear()
    _KEY_CACHE[id(a)] = (a, key)
    return key


def _key(a: Abnormality) -> tuple:
    """Identity across clones: the same change written in two clones is one abnormality (§10)."""
    bps = tuple((b.chromosome, b.arm, b.major, b.band_to) for b in a.breakpoints)
    comps = tuple(_key(c) for c in a.components)
    return (a.kind, a.sign, a.chromosomes, bps, comps, a.raw if a.kind == "unknown" else "")


def _is_del(a: Abnormality, chrom: str, arm: str) -> bool:
    return a.kind == "del" and a.sign != "+" and a.chromosomes[:1] == (chrom,) and any(
        b.arm == arm for b in a.breakpoints if b.chromosome == chrom
    )


def _breaks_17p(a: Abnormality) -> bool:
    """abn(17p): a structural change with a written 17p break (a gained copy excluded).

    A derivative of another chromosome, der(5)t(5;17)(q13;p11), carries the distal 17p as extra
    material rather than losing it, so only its computed losses count (see :func:`_lost_arms`).
    """
    if a.kind in _NOT_STRUCTURAL or a.sign == "+":
        return False
    if a.kind == "der" and a.chromosomes[:1] != ("17",):
        return False
    return any(b.chromosome == "17" and b.arm == "p" for ev in _events(a) for b in ev.breakpoints)


def _is_i17q(a: Abnormality) -> bool:
    if a.kind not in ("i", "idic") or a.chromosomes[:1] != ("17",):
        return False
    if a.kind == "idic":  # idic(17)(p11): two 17q arms joined near the centromere, the i(17q) lesion
        return any(b.arm == "p" and (b.major or "1").startswith("1") for b in a.breakpoints)
    return any(b.arm == "q" and b.major in (None, "10", "11") for b in a.breakpoints)


def _abn3q(a: Abnormality) -> bool:
    """IPSS-R 'inv(3)/t(3q)/del(3q)' (Schanz et al. 2012)."""
    if _inv_with(a, "3", (("q", None),)):
        return True
    if _breaks_at(a, "3", "q", None, frozenset({"t"})):
        return True
    return _is_del(a, "3", "q")


def _ipssr_tag(a: Abnormality) -> str:
    """The IPSS-R category of one abnormality (docs/clinical_rules.md §6; explicit deletions only)."""
    if a.kind == "-" and a.chromosomes == ("Y",):
        return "minus_y"
    if a.kind == "-" and a.chromosomes == ("7",):
        return "minus7"
    if _is_del(a, "11", "q"):
        return "del11q"
    if _is_del(a, "5", "q"):
        return "del5q"
    if _is_del(a, "12", "p"):
        return "del12p"
    if _is_del(a, "20", "q"):
        return "del20q"
    if _is_del(a, "7", "q"):
        return "del7q"
    if a.kind == "+" and a.chromosomes == ("8",):
        return "plus8"
    if a.kind == "+" and a.chromosomes == ("19",):
        return "plus19"
    if _is_i17q(a):
        return "i17q"
    if _abn3q(a):
        return "abn3q"
    return "other"


def ipssr_cyto_group(tags: list[str], n: int) -> str:
    """IPSS-R cytogenetic group from the per-abnormality tags and the raw count (docs/clinical_rules.md §6).

    Parameters
    ----------
    tags
        One IPSS-R tag per counted abnormality (``minus_y``, ``del11q``, ``del5q``, ``del12p``,
        ``del20q``, ``minus7``, ``del7q``, ``plus8``, ``plus19``, ``i17q``, ``abn3q``, ``other``).
    n
        The raw number of abnormalities (markers counted one each).

    Returns
    -------
    str
        ``very_good``, ``good``, ``intermediate``, ``poor`` or ``very_poor``.
    """
    if n == 0:
        return "good"  # "Good: normal"
    if n == 1:
        tag = tags[0] if tags else "other"
        if tag in ("minus_y", "del11q"):
            return "very_good"  # "Very good: -Y, del(11q)" (single)
        if tag in ("del5q", "del12p", "del20q"):
            return "good"  # "Good: del(5q), del(12p), del(20q)"
        if tag in ("minus7", "abn3q"):
            return "poor"  # "Poor: -7, inv(3)/t(3q)/del(3q)"
        return "intermediate"  # "Intermediate: del(7q), +8, +19, i(17q), any other single"
    if n == 2:
        if any(t in ("minus7", "del7q") for t in tags):
            return "poor"  # "Poor: double including -7/del(7q)" (checked first: del(5q) + -7 is poor)
        if "del5q" in tags:
            return "good"  # "Good: double including del(5q)"
        return "intermediate"  # "Intermediate: any other double"
    if n == 3:
        return "poor"  # "Poor: complex with 3 abnormalities"
    return "very_poor"  # "Very poor: complex with > 3 abnormalities"


def karyotype_features(karyotype: Karyotype | str | Any | None) -> KaryotypeFeatures:
    """Cytogenetic features of a karyotype for ELN 2022, IPSS-R, IPSS-M and survival models.

    Parameters
    ----------
    karyotype
        A :class:`Karyotype` or the text to parse (any value :func:`parse_karyotype` accepts).

    Returns
    -------
    KaryotypeFeatures
        Every field filled; ``None`` where the karyotype does not tell (blank, failed, free text).

    Notes
    -----
    Counting (docs/clinical_rules.md §3 notes f, g; §10): each unrelated acquired abnormality once across
    the recipient clones (the same change in two clones, or repeated through ``idem``, is one);
    constitutional (``c``) changes and heteromorphisms never count; a ``der`` counts once with its
    translocation; each marker counts; a polysomy (``+8x2``, ``+8,+8``) counts once; ``-Y`` counts.
    ``n_abnormalities`` is that raw count, as IPSS-R uses it.
    """
    if isinstance(karyotype, Karyotype):
        return _features(karyotype)
    if isinstance(karyotype, str):
        return _features_cached(karyotype)
    return _features(parse_karyotype(karyotype))


@lru_cache(maxsize=16384)
def _features_cached(text: str) -> KaryotypeFeatures:
    return _features(parse_karyotype(text))


def _features(k: Karyotype) -> KaryotypeFeatures:
    try:
        return _compute_features(k)
    except Exception as exc:  # never let one odd record stop a cohort
        return KaryotypeFeatures(text=k.text, evaluable=False,
                                 warnings=(*k.warnings, f"internal feature error ({type(exc).__name__}: {exc})"))


def _free_text_features(k: Karyotype) -> KaryotypeFeatures:
    warnings = k.warnings
    if k.status == "free_text_normal":
        flags = dict.fromkeys(_FLAG_FIELDS, False)
        return KaryotypeFeatures(text=k.text, evaluable=True, normal=True, n_abnormalities=0, n_autosomal_monosomies=0,
                                 n_structural=0, n_trisomies=0, complex=False, monosomal=False,
                                 hyperdiploid_trisomies_only=False, ipssr_group="good", warnings=warnings, **flags)
    if k.status == "free_text_complex":
        n = k.stated_n
        n_min = k.stated_n_min if n is None else n
        group = None
        if n is not None:
            group = ipssr_cyto_group([], n) if n >= 3 else None
        elif n_min is not None and n_min >= 4:
            group = "very_poor"  # "complex >3": more than 3 abnormalities whatever they are
        return KaryotypeFeatures(text=k.text, evaluable=True, normal=False, n_abnormalities=n if n and n >= 3 else None,
                                 complex=True, monosomal=True if k.stated_monosomal else None,
                                 ipssr_group=group, warnings=warnings)
    if k.status == "free_text_abnormal":
        return KaryotypeFeatures(text=k.text, evaluable=True, normal=False,
                                 monosomal=True if k.stated_monosomal else None, warnings=warnings)
    return KaryotypeFeatures(text=k.text, evaluable=False, warnings=warnings)


_FLAG_FIELDS = (
    "minus5", "del5q", "minus7", "del7q", "minus17_abn17p", "minus_y", "del11q", "del12p", "del20q", "plus8",
    "plus19", "i17q", "inv3_t3_3", "mecom_3q26", "abn3q", "t8_21", "inv16_t16_16", "t15_17", "t9_11", "kmt2a_other",
    "t6_9", "t9_22", "t8_16",
)


_FLAG_CACHE: dict[tuple, tuple[frozenset[str], str]] = {}


def _abn_flags(a: Abnormality, key: tuple) -> tuple[frozenset[str], str]:
    """Feature flags and IPSS-R tag of one abnormality; memoised by identity key (lesions recur in a cohort)."""
    got = _FLAG_CACHE.get(key)
    if got is not None:
        return got
    flags: set[str] = set()
    # ELN 2022 Table 6 lesions (docs/clinical_rules.md §3). Bands: arm + major band; t(8;21) without bands counts.
    if _has_pair(a, (("8", "q", ("22",)), ("21", "q", ("22",)))):
        flags.add("t8_21")
    if _inv_with(a, "16", (("p", ("13",)), ("q", ("22",)))) or _has_pair(a, (("16", "p", ("13",)),
                                                                           ("16", "q", ("22",)))):
        flags.add("inv16_t16_16")
    if _has_pair(a, (("15", "q", None), ("17", "q", None))):
        flags.add("t15_17")  # q22~q24;q12~q21 across ISCN editions: any q band of both
    t9_11 = _has_pair(a, (("9", "p", ("21", "22")), ("11", "q", ("23",))))
    if t9_11:
        flags.add("t9_11")
    # t(v;11q23.3): the 11q23 break must be written (ELN 2022 note e: KMT2A-PTD is not a translocation).
    elif _breaks_at(a, "11", "q", ("23",), frozenset({"t", "ins", "trc", "dic"})):
        flags.add("kmt2a_other")
    if _has_pair(a, (("6", "p", ("23",)), ("9", "q", ("34",)))):
        flags.add("t6_9")
    if _has_pair(a, (("9", "q", ("34",)), ("22", "q", ("11",)))):
        flags.add("t9_22")
    if _has_pair(a, (("8", "p", ("11",)), ("16", "p", ("13",)))):
        flags.add("t8_16")
    if _inv_with(a, "3", (("q", ("21",)), ("q", ("26",)))) or _has_pair(a, (("3", "q", ("21",)), ("3", "q", ("26",)))):
        flags.update(("inv3_t3_3", "mecom_3q26"))
    if _breaks_at(a, "3", "q", ("26",), _REARRANGING):
        flags.add("mecom_3q26")  # t(3q26.2;v)
    if _abn3q(a):
        flags.add("abn3q")
    for chrom, arm in _lost_arms(a):
        flags.add(f"loss_{chrom}{arm}")
    if _breaks_17p(a):
        flags.add("abn17p")
    if _is_i17q(a):
        flags.add("i17q")
    for chrom, arm, name in (("11", "q", "del11q"), ("12", "p", "del12p"), ("20", "q", "del20q")):
        if _is_del(a, chrom, arm):
            flags.add(name)
    out = (frozenset(flags), _ipssr_tag(a))
    if len(_FLAG_CACHE) < 65536:
        _FLAG_CACHE[key] = out
    return out


_NORMAL_FEATURES = KaryotypeFeatures(
    evaluable=True, normal=True, n_abnormalities=0, n_autosomal_monosomies=0, n_structural=0, n_trisomies=0,
    complex=False, monosomal=False, hyperdiploid_trisomies_only=False, ipssr_group="good",
    **dict.fromkeys(_FLAG_FIELDS, False),
)


def _compute_features(k: Karyotype) -> KaryotypeFeatures:
    if k.status == "normal" and not k.stated_complex:
        # Half of a cohort is normal: copy one validated record instead of recounting (same values).
        return _NORMAL_FEATURES.model_copy(update={"text": k.text, "warnings": k.warnings})
    if k.status not in ("normal", "abnormal"):
        return _free_text_features(k)
    # Unique acquired abnormalities over the recipient clones (§10: once across clones, idem repeats are
    # not new); markers by their largest count in one clone, so "+2mar" then "idem" counts 2, not 4.
    unique: dict[tuple, Abnormality] = {}
    markers: dict[str, int] = {}
    for clone in k.clones:
        in_clone: dict[str, int] = {}
        for a in clone.acquired:  # §10: constitutional changes never count
            if a.kind == "mar":
                in_clone[a.chromosomes[0]] = in_clone.get(a.chromosomes[0], 0) + a.copies
                continue
            unique.setdefault(_key_of(a), a)
        for name, n in in_clone.items():
            markers[name] = max(markers.get(name, 0), n)
    abns = list(unique.values())
    per = [_abn_flags(a, key) for key, a in unique.items()]
    flags: set[str] = set().union(*(p[0] for p in per)) if per else set()
    n_markers = sum(markers.values())
    gains = {a.chromosomes[0] for a in abns if a.kind == "+"}
    losses = {a.chromosomes[0] for a in abns if a.kind == "-"}
    n_gains = sum(1 for a in abns if a.kind == "+")
    n_struct = sum(1 for a in abns if a.kind not in _NOT_STRUCTURAL)
    n_unknown = sum(1 for a in abns if a.kind == "unknown")
    n_abn = len(abns) + n_markers
    # ELN note g: loss of X or Y never makes a karyotype monosomal; only autosomes are counted.
    n_mono = len(losses & AUTOSOMES)

    cbf = "t8_21" in flags or "inv16_t16_16" in flags
    # ELN note f: class-defining recurring abnormalities that override "complex".
    class_defining = bool(flags & {"t8_21", "inv16_t16_16", "t15_17", "t9_11", "kmt2a_other", "t6_9", "t9_22",
                                   "inv3_t3_3", "mecom_3q26"})
    hyper_modal = None
    for c in k.clones:
        if c.modal is not None and not c.normal:
            hyper_modal = c.modal > 46 if c.ploidy in (None, "<2n>") else None
            break
    # ELN note f: hyperdiploid with >= 3 trisomies/polysomies and no structural abnormality (markers are
    # structurally abnormal chromosomes, unreadable tokens may be, so either rules the exclusion out).
    hyper_only = (n_gains >= 3 and n_struct == 0 and n_markers == 0 and n_unknown == 0
                  and hyper_modal is not False)
    complex_eln = n_abn >= 3 and not class_defining and not hyper_only
    # ELN note g: >= 2 autosomal monosomies, or 1 plus >= 1 structural (markers included); CBF-AML excluded.
    monosomal = (n_mono >= 2 or (n_mono == 1 and (n_struct + n_markers) >= 1)) and not cbf

    warnings = list(k.warnings)
    if k.stated_complex and n_abn < 3:
        warnings.append(f"text says complex but only {n_abn} abnormalities were read")
    tags = [p[1] for p in per] + ["other"] * n_markers
    values = {name: name in flags for name in (
        "del11q", "del12p", "del20q", "i17q", "inv3_t3_3", "mecom_3q26", "abn3q", "t8_21", "inv16_t16_16", "t15_17",
        "t9_11", "kmt2a_other", "t6_9", "t9_22", "t8_16")}
    return KaryotypeFeatures(
        text=k.text,
        evaluable=True,
        normal=n_abn == 0,
        n_abnormalities=n_abn,
        n_autosomal_monosomies=n_mono,
        n_structural=n_struct,
        n_trisomies=n_gains,
        complex=complex_eln,
        monosomal=monosomal,
        hyperdiploid_trisomies_only=hyper_only,
        minus5="5" in losses,
        del5q="loss_5q" in flags,  # any 5q loss: del(5q), or unbalanced via der/dic/add/i
        minus7="7" in losses,
        del7q="loss_7q" in flags,
        minus17_abn17p="17" in losses or "loss_17p" in flags or "abn17p" in flags or "i17q" in flags,
        minus_y="Y" in losses,
        plus8="8" in gains,
        plus19="19" in gains,
        ipssr_group=ipssr_cyto_group(tags, n_abn),
        warnings=tuple(warnings),
        **values,
    )
