"""ISCN karyotype parser: the records, the token grammar and :func:`parse_karyotype`.

:func:`parse_karyotype` reads an ISCN 2016 karyotype string as found in cohort tables (lower case,
spaces, typos, free text, blanks; docs/clinical_rules.md §10) into a :class:`Karyotype` record and never
raises: whatever it cannot read is named in ``warnings``. The string is first cleaned and cut into
clones and tokens by :mod:`hemotwin.prognosis._iscn`; this module reads the tokens into
:class:`Abnormality` records and resolves ``idem``/``sl``/``sdl``. What the risk scores read from
the record (counts, ELN lesion flags, IPSS-R group) is derived in
:mod:`hemotwin.prognosis.karyotype_features`.

The parse is cached by string, so a cohort where the same karyotype recurs costs one parse per
distinct string. The module imports only the standard library and pydantic.

Examples
--------
>>> k = parse_karyotype("47,XY,+8[15]/46,XY[5]")
>>> k.status, [c.normal for c in k.clones]
('abnormal', [False, True])
"""

from __future__ import annotations

import math
import re
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hemotwin.prognosis import _iscn

__all__ = [
    "AUTOSOMES",
    "EVALUABLE_STATUSES",
    "Abnormality",
    "Breakpoint",
    "Clone",
    "Karyotype",
    "KaryotypeStatus",
    "parse_karyotype",
]

KaryotypeStatus = Literal[
    "normal",  # ISCN formula read, no acquired abnormality (constitutional changes allowed)
    "abnormal",  # ISCN formula read, >= 1 acquired abnormality
    "free_text_normal",  # "normal", "NK", "normal karyotype"
    "free_text_complex",  # "complex", "complex karyotype >3": complex, counts mostly unknown
    "free_text_abnormal",  # "abnormal", "hyperdiploid": abnormal, nothing else known
    "failed",  # culture or analysis failed
    "no_growth",  # no metaphases / no mitoses
    "not_done",  # not done, pending
    "blank",  # None, NaN, "", "NA"
    "molecular_only",  # only a FISH / array result, no karyotype
    "unreadable",  # text that could not be read at all
]

#: Statuses under which a karyotype (formula or reliable free text) is known.
EVALUABLE_STATUSES = frozenset({"normal", "abnormal", "free_text_normal", "free_text_complex", "free_text_abnormal"})

#: The autosomes, named as in :attr:`Abnormality.chromosomes` ("1" ... "22").
AUTOSOMES = frozenset(str(i) for i in range(1, 23))
_CHROMOSOMES = AUTOSOMES | {"X", "Y"}


# --------------------------------------------------------------------------------------------- records
class Breakpoint(BaseModel):
    """One band of a structural abnormality, e.g. ``q22.1`` of chromosome 21 in ``t(8;21)(q22;q22.1)``.

    ``band`` is the number after the arm (``"22.1"``, ``"2"``, ``"ter"``, ``"10"``) or None when
    only the arm is known (``del(5q)``, ``i(17q)``) or the band was written ``?``.
    """

    model_config = ConfigDict(frozen=True)

    chromosome: str | None = None
    arm: Literal["p", "q"] | None = None
    band: str | None = None
    band_to: str | None = Field(None, description="Upper end of a band range such as q21~q23.")
    uncertain: bool = False

    @property
    def major(self) -> str | None:
        """The band without its sub-band (``"22.1"`` -> ``"22"``)."""
        return None if self.band is None else self.band.split(".", 1)[0]


class Abnormality(BaseModel):
    """One abnormality of a clone, as written.

    ``kind`` is the ISCN type: ``"+"`` / ``"-"`` for gain or loss of a whole chromosome, else the
    structural abbreviation (``t``, ``inv``, ``del``, ``der``, ``i``, ``mar``, ``dmin`` ...);
    ``"var"`` marks a heteromorphism (``9qh+``) and ``"unknown"`` a token that looks like an
    abnormality but could not be read. ``sign`` is the gain/loss of a structurally abnormal
    chromosome (``+der(22)t(9;22)`` -> kind ``der``, sign ``+``; :attr:`label` gives ``"+der"``).
    """

    model_config = ConfigDict(frozen=True)

    kind: str
    sign: Literal["+", "-"] | None = None
    chromosomes: tuple[str, ...] = ()
    breakpoints: tuple[Breakpoint, ...] = ()
    bands: str | None = Field(None, description="The band group as written, e.g. 'q22;q22.1'.")
    components: tuple[Abnormality, ...] = Field((), description="Rearrangements forming a der/ider/rec.")
    copies: int = Field(1, ge=0, description="Multiplier: +8x2 -> 2, +2mar -> 2.")
    constitutional: bool = False
    uncertain: bool = False
    numerical: bool = False
    structural: bool = False
    raw: str = ""

    @property
    def label(self) -> str:
        """``kind`` with the sign of a gained/lost structure (``+der``, ``+mar``, ``-mar``)."""
        if self.kind in ("+", "-") or self.sign is None:
            return self.kind
        return self.sign + self.kind


class Clone(BaseModel):
    """One cell population (the text between ``/``)."""

    model_config = ConfigDict(frozen=True)

    raw: str = ""
    modal: int | None = Field(None, description="Modal number, or the lower end of a range such as 45~47.")
    modal_max: int | None = Field(None, description="Upper end of a modal range (None when a single number).")
    ploidy: str | None = Field(None, description="Ploidy tag such as '<2n>'.")
    sex_chromosomes: str | None = None
    abnormalities: tuple[Abnormality, ...] = Field((), description="All abnormalities, idem/sl/sdl resolved.")
    written: tuple[Abnormality, ...] = Field((), description="Only the abnormalities written in this clone.")
    cells: int | None = None
    composite: bool = Field(False, description="'cp': composite karyotype.")
    incomplete: bool = Field(False, description="'inc': incomplete karyotype.")
    reference: str | None = Field(None, description="'idem', 'sl', 'sdl', 'sdl1' ... when a subclone.")
    parent: int | None = Field(None, description="Index of the clone that idem/sl/sdl refers to.")
    normal: bool = Field(False, description="No acquired abnormality: the normal clone.")

    @property
    def acquired(self) -> tuple[Abnormality, ...]:
        """Abnormalities that count: not constitutional, and not a subclone's '-mar'."""
        return tuple(a for a in self.abnormalities if _counts(a))


class Karyotype(BaseModel):
    """A parsed karyotype string.

    ``clones`` are the recipient's (or the only) cells; ``donor_clones`` those after ``//``
    (ISCN 2016: recipient first, donor second). FISH and array results (``ish``, ``nuc ish``,
    ``arr``) are kept as written in ``molecular`` and never counted.
    """

    model_config = ConfigDict(frozen=True)

    text: str = ""
    status: KaryotypeStatus = "blank"
    clones: tuple[Clone, ...] = ()
    donor_clones: tuple[Clone, ...] = ()
    molecular: tuple[str, ...] = ()
    comments: tuple[str, ...] = Field((), description="Free-text words found beside the formula.")
    stated_n: int | None = Field(None, description="Number of abnormalities stated in free text.")
    stated_n_min: int | None = Field(None, description="Lower bound stated in free text ('complex >3' -> 4).")
    stated_complex: bool = False
    stated_monosomal: bool = False
    warnings: tuple[str, ...] = ()

    @property
    def evaluable(self) -> bool:
        """A karyotype was read (formula or unambiguous free text)."""
        return self.status in EVALUABLE_STATUSES

    @property
    def n_cells(self) -> int | None:
        """Metaphases counted over the recipient clones (None when no count was written)."""
        counts = [c.cells for c in self.clones if c.cells is not None]
        return sum(counts) if counts else None


Abnormality.model_rebuild()


def _abn(**kw: Any) -> Abnormality:
    # Validated construction (pydantic-core is faster here than model_construct); records are built
    # once per distinct token thanks to the token cache, so validation costs little.
    return Abnormality(**kw)


# ------------------------------------------------------------------------------------- token grammar
_STRUCT_TYPES = (
    "psudic|ider|idic|der|rec|dic|dup|del|add|inv|ins|rob|trc|tas|trp|qdp|fra|hsr|fis|tan|pcc|t|i|r|h"
)
_TYPE_RE = re.compile(rf"(?P<kind>{_STRUCT_TYPES})(?P<unc>\?)?(?=\()")
_GROUP_RE = re.compile(r"\(([^()]*)\)")
_CHROM_ITEM_RE = re.compile(r"(?P<c>\d{1,2}|x|y|\?|v|mar\d*)(?P<arm>[pq])?(?P<unc>\?)?$")
_NUM_RE = re.compile(r"(?P<sign>[+\-])(?P<unc>\?)?(?P<chrom>\d{1,2}|x|y)(?![\d(])")
_MAR_RE = re.compile(r"(?P<sign>[+\-])?(?P<n>\d+)?(?:~(?P<n2>\d+))?(?P<unc>\?)?mar(?P<id>\d*)")
_DMIN_RE = re.compile(r"(?P<sign>[+\-])?(?P<n>\d+)?(?:~\d+)?dmin")
_BARE_RE = re.compile(r"(?P<sign>[+\-])?(?P<n>\d+)?(?:~\d+)?(?P<kind>hsr|r)(?![a-z(])")
_SUFFIX_RE = re.compile(r"(?:x(?P<copies>\d+)(?:~\d+)?)?(?P<c>c)?(?P<unc>\?)?")
_MODAL_RE = re.compile(r"(?P<lo>\d{1,3})(?:(?:~|-)(?P<hi>\d{1,3}))?(?P<ploidy><\d?(?:\.\d)?n>)?(?P<sex>[xy]+)?$")
_PLOIDY_ONLY_RE = re.compile(r"<\d?(?:\.\d)?n>$")
_SEX_RE = re.compile(r"[xy]+\??$|\?$")
_REF_RE = re.compile(r"(?P<ref>idem|sl|sdl(?P<k>\d*))(?:x(?P<mult>\d+))?$")
_WORD_RE = re.compile(r"[a-z][a-z'\-]*[a-z]$|[a-z]$")
_HETERO_RE = re.compile(r"(?:\d{1,2}|x|y)[pq](?:h|s|stk|ss|sat)[+\-]+(?:x\d)?c?$")
_INV9_RE = re.compile(r"inv\(9\)\(p1\d(?:\.\d+)?q(?:1[1-3]|2[1-2])(?:\.\d+)?\)c?$")
# Shorthands of hand-typed tables: "5q-", "-5q", "del5q", "i17q", "inv16", "+1q".
_SHORT_LOSS_RE = re.compile(r"(?P<unc>\?)?(?:(?P<c>\d{1,2}|x|y)(?P<arm>[pq])-|-(?P<c2>\d{1,2}|x|y)(?P<arm2>[pq]))$")
_SHORT_TYPE_RE = re.compile(r"(?P<kind>del|inv|i|idic|dup|add|r)(?P<c>\d{1,2}|x|y)(?P<arm>[pq])?$")
_SHORT_GAIN_RE = re.compile(r"\+(?P<c>\d{1,2}|x|y)(?P<arm>[pq])$")

_COPIES_RE = re.compile(r"x\d+")
_ISCNISH_RE = re.compile(r"[a-z]{1,5}\??\([\dxy?;]*[\dxy?]\)")  # "xyz(3)": a type we do not know
_DER_ALONE_RE = re.compile(r"(?:der|ider|rec)\?*\([^()]*\)")
_MAX_DEPTH = 4


def _chrom_name(c: str) -> str:
    return c.upper() if c in ("x", "y") else c


def _parse_chromosomes(text: str, warnings: list[str], raw: str) -> tuple[tuple[str, ...], list[Breakpoint]]:
    """``"9;22"`` -> ('9', '22'); ``"17q"`` -> ('17',) with an arm-only breakpoint."""
    chroms: list[str] = []
    arms: list[Breakpoint] = []
    for item in text.split(";"):
        m = _CHROM_ITEM_RE.match(item)
        if m is None:
            warnings.append(f"'{raw}': chromosome '{item}' not understood")
            chroms.append("?")
            continue
        c = _chrom_name(m.group("c"))
        if c == "v":
            c = "?"  # "t(v;11)": a variable partner, as written in reviews and tables
        if c not in _CHROMOSOMES and c != "?" and not c.startswith("mar"):
            warnings.append(f"'{raw}': no chromosome {c}")
            c = "?"
        chroms.append(c)
        if m.group("arm"):
            arms.append(Breakpoint(chromosome=c, arm=m.group("arm"), band=None, band_to=None,
                                                   uncertain=bool(m.group("unc"))))
    return tuple(chroms), arms


def _parse_bands(text: str, chroms: tuple[str, ...], warnings: list[str], raw: str) -> list[Breakpoint]:
    """``"q22;q22.1"`` for ('8', '21') -> breakpoints 8q22 and 21q22.1."""
    if "->" in text or "::" in text:
        warnings.append(f"'{raw}': detailed band system not interpreted")
        return []
    groups = text.split(";")
    if len(groups) != len(chroms):
        warnings.append(f"'{raw}': {len(groups)} band groups for {len(chroms)} chromosomes")
    out: list[Breakpoint] = []
    for gi, group in enumerate(groups):
        chrom = chroms[min(gi, len(chroms) - 1)] if chroms else None
        pos = 0
        while pos < len(group):
            m = _iscn.BAND_RE.match(group, pos)
            if m is None or m.end() == pos:
                warnings.append(f"'{raw}': band '{group[pos:]}' not understood")
                break
            pos = m.end()
            if m.group("cen"):
                out.append(Breakpoint(chromosome=chrom, arm=None, band="cen", band_to=None,
                                                      uncertain=False))
            elif m.group("q"):
                out.append(Breakpoint(chromosome=chrom, arm=None, band=None, band_to=None,
                                                      uncertain=True))
            else:
                num = m.group("num")
                out.append(Breakpoint(chromosome=chrom, arm=m.group("arm"), band=num,
                                                      band_to=m.group("num2"), uncertain=bool(m.group("unc"))))
    return out


def _parse_struct(tok: str, pos: int, depth: int, warnings: list[str]) -> tuple[Abnormality, int] | None:
    """Read one structural rearrangement ``type(chromosomes)(bands)`` at ``pos`` (der: with its parts)."""
    unc_pre = False
    while pos < len(tok) and tok[pos] == "?":
        unc_pre = True
        pos += 1
    m = _TYPE_RE.match(tok, pos)
    if m is None:
        return None
    g = _GROUP_RE.match(tok, m.end())
    if g is None:
        return None
    kind = m.group("kind")
    if kind == "psudic":
        kind = "dic"  # a pseudodicentric has the same gains and losses as a dicentric
    chroms, bps = _parse_chromosomes(g.group(1), warnings, tok)
    pos = g.end()
    bands = None
    g2 = _GROUP_RE.match(tok, pos)
    # A second group is a band group unless it is a bare number (a cell count typed in parentheses).
    if g2 is not None and not _iscn.is_number(g2.group(1)):
        bands = g2.group(1)
        bps = bps + _parse_bands(bands, chroms, warnings, tok)
        pos = g2.end()
    components: list[Abnormality] = []
    if kind in ("der", "ider", "rec"):
        while depth < _MAX_DEPTH:
            sub = _parse_struct(tok, pos, depth + 1, warnings)
            if sub is None:
                break
            components.append(sub[0])
            pos = sub[1]
    abn = _abn(kind=kind, sign=None, chromosomes=chroms, breakpoints=tuple(bps), bands=bands,
               components=tuple(components), copies=1, constitutional=False,
               uncertain=unc_pre or bool(m.group("unc")), numerical=False, structural=True, raw=tok)
    return abn, pos


def _scan_one(tok: str, pos: int, warnings: list[str]) -> tuple[Abnormality, int] | None:
    """Read one abnormality of any kind at ``pos``; None if nothing there is readable."""
    start = pos
    unc = False
    while pos < len(tok) and tok[pos] == "?":
        unc = True
        pos += 1
    p0 = pos
    abn: Abnormality | None = None
    if pos < len(tok) and tok[pos] in "+-":
        s = _parse_struct(tok, pos + 1, 0, warnings)
        if s is not None:
            abn, pos = s[0].model_copy(update={"sign": tok[p0]}), s[1]
    else:
        s = _parse_struct(tok, pos, 0, warnings)
        if s is not None:
            abn, pos = s
    if abn is None:
        if (m := _MAR_RE.match(tok, p0)) is not None:
            n = max(int(m.group("n")), 1) if m.group("n") else 1
            abn = _abn(kind="mar", sign=m.group("sign"), chromosomes=("mar" + m.group("id"),), breakpoints=(),
                       bands=None, components=(), copies=n, constitutional=False,
                       uncertain=bool(m.group("unc")) or bool(m.group("n2")), numerical=False, structural=False,
                       raw="")
            pos = m.end()
        elif (m := _DMIN_RE.match(tok, p0)) is not None:
            abn = _abn(kind="dmin", sign=m.group("sign"), chromosomes=(), breakpoints=(), bands=None,
                       components=(), copies=1, constitutional=False, uncertain=False, numerical=False,
                       structural=True, raw="")
            pos = m.end()
        elif (m := _NUM_RE.match(tok, p0)) is not None:
            chrom = _chrom_name(m.group("chrom"))
            if chrom not in _CHROMOSOMES:
                warnings.append(f"'{tok}': no chromosome {chrom}")
                return None
            abn = _abn(kind=m.group("sign"), sign=None, chromosomes=(chrom,), breakpoints=(), bands=None,
                       components=(), copies=1, constitutional=False, uncertain=bool(m.group("unc")),
                       numerical=True, structural=False, raw="")
            pos = m.end()
        elif (m := _BARE_RE.match(tok, p0)) is not None:
            # "+r" (a ring of unknown origin), "hsr" written without chromosome
            abn = _abn(kind=m.group("kind"), sign=m.group("sign"), chromosomes=("?",), breakpoints=(), bands=None,
                       components=(), copies=int(m.group("n") or 1), constitutional=False, uncertain=False,
                       numerical=False, structural=True, raw="")
            pos = m.end()
        else:
            return None
    suf = _SUFFIX_RE.match(tok, pos)
    update: dict[str, Any] = {}
    if suf is not None and suf.end() > pos:
        if suf.group("copies"):
            update["copies"] = int(suf.group("copies"))
        if suf.group("c"):
            update["constitutional"] = True
        if suf.group("unc"):
            update["uncertain"] = True
        pos = suf.end()
    if unc:
        update["uncertain"] = True
    update["raw"] = tok[start:pos]
    return abn.model_copy(update=update), pos


def _parse_token(tok: str, warnings: list[str]) -> list[Abnormality]:
    """Read every abnormality in one comma-free token (several when a comma was forgotten: ``-7+8``)."""
    abns, w = _parse_token_cached(tok)
    warnings.extend(w)
    return list(abns)


@lru_cache(maxsize=32768)
def _parse_token_cached(tok: str) -> tuple[tuple[Abnormality, ...], tuple[str, ...]]:
    # Tokens recur across a cohort far more than whole strings ("+8", "del(5)(q13q33)"): cache them.
    warnings: list[str] = []
    return tuple(_parse_token_uncached(tok, warnings)), tuple(warnings)


def _parse_token_uncached(tok: str, warnings: list[str]) -> list[Abnormality]:
    tok = _expand_shorthand(tok, warnings)
    out: list[Abnormality] = []
    pos = 0
    while pos < len(tok):
        got = _scan_one(tok, pos, warnings)
        if got is None:
            rest = tok[pos:]
            if _looks_like_abnormality(rest):
                warnings.append(f"'{rest}': unreadable abnormality, counted as one of unknown type")
                out.append(_abn(kind="unknown", sign=None, chromosomes=(), breakpoints=(), bands=None, components=(),
                                copies=1, constitutional=False, uncertain=True, numerical=False, structural=False,
                                raw=rest))
            else:
                warnings.append(f"'{rest}': not understood, ignored")
            break
        if out:
            warnings.append(f"'{tok}': missing ',' between abnormalities")
        out.append(got[0])
        pos = got[1]
    return out


def _expand_shorthand(tok: str, warnings: list[str]) -> str:
    if (m := _SHORT_LOSS_RE.match(tok)) is not None:
        c, arm = (m.group("c"), m.group("arm")) if m.group("c") else (m.group("c2"), m.group("arm2"))
        new = f"{m.group('unc') or ''}del({c}{arm})"
    elif (m := _SHORT_TYPE_RE.match(tok)) is not None:
        new = f"{m.group('kind')}({m.group('c')}{m.group('arm') or ''})"
    elif (m := _SHORT_GAIN_RE.match(tok)) is not None:
        new = f"+dup({m.group('c')}{m.group('arm')})"
    else:
        return tok
    warnings.append(f"'{tok}': shorthand read as '{new}'")
    return new


def _looks_like_abnormality(s: str) -> bool:
    # Garbled ISCN ("del(5(q", "t(3;?") counts as an abnormality of unknown type; stray words or
    # numbers ("see", "20", ">3") do not.
    if s[:1] in ("+", "-", "?"):
        return any(ch in _iscn.DIGITS for ch in s) or "(" in s
    return _ISCNISH_RE.match(s) is not None or (_TYPE_RE.match(s + "(") is not None and len(s) <= 6)


# ---------------------------------------------------------------------------------------- clones
def _split_missing_slash(tokens: list[str], warnings: list[str]) -> list[list[str]]:
    """``47,xy,+8[15],46,xy[5]``: a cell count followed by a modal number starts a new clone."""
    groups: list[list[str]] = [[]]
    for i, tok in enumerate(tokens):
        groups[-1].append(tok)
        if ("]" in tok or tok.endswith(")")) and i + 1 < len(tokens) and _MODAL_RE.match(tokens[i + 1]):
            _, n, _, _ = _iscn.strip_cell_count(tok)
            if n is not None:
                warnings.append(f"'{tok},{tokens[i + 1]}': missing '/' between clones")
                groups.append([])
    return [g for g in groups if g]


@lru_cache(maxsize=16384)
def _parse_clone_cached(tokens: tuple[str, ...]) -> tuple[tuple[dict[str, Any], tuple[str, ...], bool, tuple[str, ...]],
                                                          ...]:
    # Clones recur across a cohort ("46,XY[20]", "47,XY,+8[5]"): read each distinct one once. The
    # field dicts are shared between calls, so nothing downstream may mutate them.
    warnings: list[str] = []
    out = []
    for group in _split_missing_slash(list(tokens), warnings):
        clone_warnings: list[str] = []
        fields, words, formal = _parse_clone(group, clone_warnings)
        out.append((fields, tuple(words), formal, tuple(clone_warnings)))
    if warnings and out:
        f, w, formal, cw = out[0]
        out[0] = (f, w, formal, (*warnings, *cw))
    return tuple(out)


def _parse_clone(tokens: list[str], warnings: list[str]) -> tuple[dict[str, Any], list[str], bool]:
    """Read the tokens of one clone.

    Returns the clone's field dict (abnormalities not yet resolved), its free-text words, and
    whether any formal ISCN content was found.
    """
    modal = modal_max = None
    ploidy = sex = ref = None
    cells = None
    composite = incomplete = False
    written: list[Abnormality] = []
    comments: list[str] = []
    formal = False
    mosaic = False
    skip_next = False
    pending: list[str] = []  # "der(11)" alone followed by "t(3;11)(p21;q23)": a space split one token
    for i, raw_tok in enumerate(tokens):
        tok, n, cp, w = _iscn.strip_cell_count(raw_tok)
        if w:
            warnings.append(w)
        if n is not None or cp:
            cells = n if n is not None else cells
            composite = composite or cp
            formal = True
        if not tok:
            continue
        if skip_next:
            skip_next = False
            warnings.append(f"'or {tok}': alternative interpretation ignored")
            continue
        if pending:
            tok = pending.pop() + tok
        if (modal is None and sex is None and not written and ref is None
                and (m := _MODAL_RE.match(tok)) is not None and 10 <= int(m.group("lo")) <= 400):
            modal = int(m.group("lo"))
            modal_max = int(m.group("hi")) if m.group("hi") else None
            if m.group("hi") and "-" in tok:
                warnings.append(f"'{tok}': '-' read as the range sign '~'")
            ploidy = m.group("ploidy")
            if m.group("sex"):
                sex = m.group("sex").upper()
                formal = True
                warnings.append(f"'{tok}': missing ',' after the modal number")
            continue  # a bare number is not yet a karyotype ("46" alone stays unreadable)
        if _PLOIDY_ONLY_RE.match(tok) and not written:
            ploidy = tok
            continue
        if sex is None and not written and ref is None and _SEX_RE.match(tok):
            sex = tok.upper()
            formal = formal or modal is not None  # "XY" or "?" alone is not yet a karyotype
            continue
        if (m := _REF_RE.match(tok)) is not None:
            ref = m.group("ref")  # not formal content by itself: "SL" alone is no karyotype
            continue
        if tok in ("inc", "cp"):
            incomplete = incomplete or tok == "inc"
            composite = composite or tok == "cp"
            continue
        if tok == "or":
            skip_next = True
            continue
        if tok in ("mos", "chi"):
            # ISCN "mos"/"chi" introduce constitutional mosaicism or chimerism: nothing here is acquired.
            warnings.append(f"'{tok}': constitutional mosaic/chimera, no change counted")
            mosaic = True
            continue
        if written and (tok == "c" or _COPIES_RE.fullmatch(tok)):
            # "+21 c" or "+8 x2": a suffix split from its abnormality by a space
            upd = {"constitutional": True} if tok == "c" else {"copies": int(tok[1:])}
            written[-1] = written[-1].model_copy(update=upd)
            continue
        if _HETERO_RE.match(tok) or _INV9_RE.match(tok):
            # Heterochromatin/satellite variants and the pericentric inv(9) are normal variants
            # (ISCN 2016 §4.3): recorded as constitutional, never counted.
            warnings.append(f"'{tok}': normal variant (heteromorphism), not counted")
            kind = "inv" if tok.startswith("inv") else "var"
            written.append(_abn(kind=kind, sign=None, chromosomes=("9",) if kind == "inv" else (), breakpoints=(),
                                bands=None, components=(), copies=1, constitutional=True, uncertain=False,
                                numerical=False, structural=kind == "inv", raw=tok))
            formal = True
            continue
        if (
            _DER_ALONE_RE.fullmatch(tok)
            and i + 1 < len(tokens)
            and _TYPE_RE.match(tokens[i + 1].lstrip("?"))
        ):
            pending.append(tok)
            warnings.append(f"'{tok}': joined with the next token (space inside a derivative)")
            continue
        if tok in ("psu",):
            pending.append("psu")
            continue
        if _WORD_RE.match(tok) and not tok.startswith(("mar", "dmin", "hsr")) and tok not in ("r",):
            comments.append(tok)
            continue
        if _iscn.is_number(tok) and i == len(tokens) - 1 and cells is None and formal:
            cells = int(tok)  # "46,xy,del(5)(q13q33),20": the count typed without brackets
            warnings.append(f"'{tok}': read as the cell count (no brackets)")
            continue
        abns = _parse_token(tok, warnings)
        if abns:
            formal = True
            written.extend(abns)
    if formal and modal is None and ref is None and not mosaic:
        warnings.append(f"'{','.join(tokens)[:60]}': no modal number (abnormalities read without the formula)")
    fields = {
        "raw": ",".join(tokens), "modal": modal, "modal_max": modal_max, "ploidy": ploidy, "sex_chromosomes": sex,
        "written": tuple(written), "cells": cells, "composite": composite, "incomplete": incomplete,
        "reference": ref, "mosaic": mosaic,
    }
    return fields, comments, formal


def _counts(a: Abnormality) -> bool:
    """An acquired change that counts: not constitutional, and not '-mar' (a subclone losing a marker)."""
    return not a.constitutional and not (a.kind == "mar" and a.sign == "-")


def _resolve(clone_fields: list[dict[str, Any]], warnings: list[str]) -> tuple[Clone, ...]:
    """Expand idem/sl/sdl into full abnormality lists and mark the normal clone."""
    clones: list[Clone] = []
    sexes = {f["sex_chromosomes"] for f in clone_fields}
    mosaic = any(f.get("mosaic", False) for f in clone_fields)
    for i, f in enumerate(clone_fields):
        f = {k: v for k, v in f.items() if k != "mosaic"}  # a copy: the cached dicts stay untouched
        ref = f["reference"]
        parent = None
        inherited: tuple[Abnormality, ...] = ()
        if ref is not None:
            if ref in ("idem", "sl"):
                parent = 0  # ISCN: idem and sl both mean the stemline, the first clone
            elif ref == "sdl":
                parent = i - 1  # the sideline just before
            else:
                parent = int(ref[3:])  # sdl1 = first sideline = clone 1 (the stemline is clone 0)
            if parent is None or parent >= i or parent < 0:
                warnings.append(f"'{ref}' in clone {i + 1} refers to no earlier clone")
                parent = None
            else:
                inherited = clones[parent].abnormalities
        written = f["written"]
        if f["sex_chromosomes"] is None and parent is not None:
            f = {**f, "sex_chromosomes": clones[parent].sex_chromosomes}  # "47,idem,+8": sex as in the parent
        # "45,X[5]/46,XY[15]": a lost sex chromosome left unwritten; infer it from the other clones.
        if mosaic:
            written = tuple(a.model_copy(update={"constitutional": True}) for a in written)
        elif (f["sex_chromosomes"] == "X" and f["modal"] == 45 and not any(a.kind == "-" for a in written)
                and ref is None):
            other = "XY" if "XY" in sexes else ("XX" if "XX" in sexes else None)
            if other is not None:
                lost = "Y" if other == "XY" else "X"
                warnings.append(f"clone {i + 1}: '45,X' beside '46,{other}' read as -{lost}")
                written = (*written, _abn(kind="-", sign=None, chromosomes=(lost,), breakpoints=(), bands=None,
                                          components=(), copies=1, constitutional=False, uncertain=True,
                                          numerical=True, structural=False, raw=f"-{lost}"))
            else:
                warnings.append(f"clone {i + 1}: '45,X' without -X/-Y: sex-chromosome loss not counted")
        abns = inherited + tuple(written)
        normal = not any(_counts(a) for a in abns)
        clones.append(Clone(**{**f, "written": tuple(written)}, abnormalities=abns, parent=parent,
                                            normal=normal))
    return tuple(clones)


# ---------------------------------------------------------------------------------------- parse
def parse_karyotype(text: Any) -> Karyotype:
    """Read an ISCN karyotype string; never raises.

    Parameters
    ----------
    text
        The karyotype as written, e.g. ``"46,XY,del(5)(q13q33)[15]/46,XY[5]"``. ``None``, NaN and
        other non-strings are accepted (NaN and None give status ``"blank"``).

    Returns
    -------
    Karyotype
        Clones with their abnormalities, FISH/array suffixes, free-text hints, a status and the
        warnings naming each token that could not be read and why. The record is cached and shared
        between equal strings; it is frozen.
    """
    if text is None:
        return _parse_cached("")
    if not isinstance(text, str):
        if _is_missing(text):
            return _parse_cached("")
        try:
            text = str(text)
        except Exception:  # an object whose __str__ fails is still only a missing karyotype
            return _parse_cached("")
    return _parse_cached(text)


def _is_missing(value: Any) -> bool:
    if isinstance(value, float):
        return math.isnan(value)
    try:
        return bool(value != value) or type(value).__name__ in ("NAType", "NaTType")
    except Exception:  # pd.NA raises on bool(); anything else unusual counts as missing too
        return True


@lru_cache(maxsize=16384)
def _parse_cached(text: str) -> Karyotype:
    try:
        return _parse(text)
    except Exception as exc:  # the promise is "never raises": report the bug instead of crashing a cohort
        return Karyotype(text=text, status="unreadable",
                                         warnings=(f"internal parser error ({type(exc).__name__}: {exc})",))


def _parse(text: str) -> Karyotype:
    warnings: list[str] = []
    s, w = _iscn.prepare(text)
    warnings.extend(w)
    if s.strip(" .,;:") in ("", "nan", "na", "n/a", "none", "null", "<na>", "-", "?"):
        return Karyotype(text=text, status="blank", warnings=tuple(warnings))
    head, molecular = _iscn.split_molecular(s)
    cleaned, w = _iscn.clean(head)
    warnings.extend(w)
    recipient_tokens, donor_tokens = _iscn.split_parts(cleaned)
    comments: list[str] = []
    formal_any = False
    parts: list[tuple[Clone, ...]] = []
    for part in (recipient_tokens, donor_tokens):
        fields_list = []
        for clone_tokens in part:
            for fields, words, formal, clone_warnings in _parse_clone_cached(tuple(clone_tokens)):
                warnings.extend(clone_warnings)
                comments.extend(words)
                if formal:
                    formal_any = True
                    fields_list.append(fields)
        parts.append(_resolve(fields_list, warnings))
    recipient, donor = parts
    if not recipient and donor:
        warnings.append("no recipient line before '//': the donor line is read as the karyotype")
        recipient, donor = donor, ()
    words = " ".join(comments)
    free_status, hints = _iscn.classify_free_text(s if not formal_any else words)
    stated_complex = free_status == "free_text_complex"
    base: dict[str, Any] = {
        "text": text, "molecular": molecular, "comments": tuple(comments),
        "stated_n": hints.get("n"), "stated_n_min": hints.get("n_min"), "stated_complex": stated_complex,
        "stated_monosomal": bool(hints.get("monosomal", False)),
    }
    if not formal_any:
        status = free_status
        if molecular and status in ("blank", "unreadable"):
            status = "molecular_only"
            warnings.append("only a FISH/array result: no karyotype to read")
        elif status == "free_text_complex" and "n" not in hints:
            warnings.append("free text says complex without the abnormalities: counts unknown")
        elif status == "unreadable":
            warnings.append(f"'{text.strip()[:80]}': no karyotype formula or known phrase")
        return Karyotype(**base, status=status, warnings=tuple(warnings))
    if comments:
        warnings.append(f"free text beside the formula: '{words[:80]}'")
    if molecular:
        warnings.append("FISH/array suffix recorded, not counted")
    if any(c.incomplete for c in recipient):
        warnings.append("'inc': incomplete karyotype, counts are lower bounds")
    if any(not c.normal for c in donor):
        warnings.append("abnormal donor line after '//': not counted")
    abnormal = any(not c.normal for c in recipient)
    return Karyotype(**base, status="abnormal" if abnormal else "normal", clones=recipient,
                                     donor_clones=donor, warnings=tuple(dict.fromkeys(warnings)))
