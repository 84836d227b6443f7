"""Lexical layer of the ISCN karyotype parser: clean a raw string and cut it into clones and tokens.

Nothing here knows about abnormalities; :mod:`hemotwin.prognosis.karyotype` turns the tokens into
records. Everything is plain string work on precompiled regular expressions so that a cohort of
10,000 strings is cut in a fraction of a second (docs/clinical_rules.md §10: lower case, spaces, typos and
free text all occur in real cohort tables, and none of them may raise).
"""

from __future__ import annotations

import itertools
import re

__all__ = [
    "BAND_RE",
    "MAX_CHARS",
    "classify_free_text",
    "clean",
    "is_number",
    "split_molecular",
    "split_parts",
    "strip_cell_count",
]

#: ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
DIGITS = frozenset("0123456789")
_DIGITS = DIGITS


def is_number(s: str) -> bool:
    """A non-empty run of ASCII digits (``str.isdigit`` accepts "²", which ``int`` refuses)."""
    return bool(s) and s.isascii() and s.isdigit()


#: Longer inputs are cut: no real karyotype comes near, and the cut bounds the work on hostile text.
MAX_CHARS = 4000

# Unicode look-alikes met in spreadsheets (Word autocorrect, copy from PDFs) -> their ASCII meaning.
_TRANSLATE = str.maketrans({
    "×": "x", "～": "~", "∼": "~", "−": "-", "–": "-", "—": "-", "‐": "-", "≥": ">=", "≤": "<=",
    "；": ";", "，": ",", "（": "(", "）": ")", "［": "[", "］": "]", "→": "->", "＋": "+", "：": ":",
    "\u00a0": " ", "\t": " ", "\n": " ", "\r": " ", "\u3000": " ",
})

# English phrases that stand for ISCN tokens in hand-typed tables; rewritten before lexing.
_PHRASES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"\btrisomy\s*(\d{1,2}|x|y)\b"), r"+\1"),
    (re.compile(r"\btetrasomy\s*(\d{1,2}|x|y)\b"), r"+\1x2"),
    (re.compile(r"\bmonosomy\s*(\d{1,2}|x|y)\b"), r"-\1"),
    (re.compile(r"\bloss\s+of\s+(x|y)\b"), r"-\1"),
    (re.compile(r"\bdel\s+(\d{1,2})\s*([pq])\b"), r"del(\1\2)"),
    (re.compile(r"\bpsu\s+dic\b"), "psudic"),
)

_PHRASE_HINT_RE = re.compile(r"somy|loss|del\s|psu\s")

# FISH and array results follow the karyotype (ISCN 2016 §13-14); recorded, never counted.
_MOLECULAR_RE = re.compile(r"(?:^|(?<=[\s.,;\]/]))(nuc\s*ish|ish|arr|rsa)(?=[\s(\[]|$)")

#: One band of a band group: ``q22``, ``q22.1``, ``p1?``, ``pter``, ``cen``, ``q21~q23``, ``?``.
BAND_RE = re.compile(
    r"(?P<arm>[pq])(?P<num>ter|\d+(?:\.\d+)*)?(?:~[pq]?(?P<num2>\d+(?:\.\d+)*))?(?P<unc>\?)?|(?P<cen>cen)|(?P<q>\?)"
)

_CELLS_BRACKET_RE = re.compile(r"\[(?P<body>[^\[\]]*)\]?$")
_CELLS_BODY_RE = re.compile(r"(?P<cp>cp)?(?P<n>\d+)?(?:~(?P<n2>\d+))?(?P<rest>.*)$")
_CELLS_PAREN_RE = re.compile(r"\((?P<n>\d+)\)$")
_CELLS_TRAIL_RE = re.compile(r"(?P<n>\d+)\]$")
_SEXLIKE_RE = re.compile(r"(?:\d{1,3})?[xy?]+$|idem|sl|sdl\d*")

# Whole-string free text (used only when no formal ISCN content was found).
_BLANK_WORDS = frozenset({
    "", "nan", "na", "n/a", "n.a.", "none", "null", "-", "--", "?", "unknown", "missing", "<na>", "nat", "no data",
})
_NOT_DONE_RE = re.compile(r"not\s+(?:done|performed|available|tested|analy[sz]ed)|^n\.?d\.?$|pending|not\s+applicable")
_NO_GROWTH_RE = re.compile(
    r"no\s+(?:growth|metaphas|mitos|mitotic|dividing|analy[sz]able|evaluable\s+metaphas|cells)|\b0\s+metaphas"
    r"|insufficient\s+(?:metaphas|mitos|growth)"
)
_FAILED_RE = re.compile(
    r"fail|unsuccessful|not\s+evaluable|inevaluable|unevaluable|inadequate|insufficient|no\s+result"
    r"|uninformative|non-?informative|inconclusive|not\s+interpretable"
)
_COMPLEX_RE = re.compile(r"complex|\bck\b|\bcplx\b")
_ABNORMAL_RE = re.compile(
    r"abnormal|aberrant|aberration|hyperdiploid|hypodiploid|monosomal|hypotriploid|near-?triploid"
)
_NORMAL_RE = re.compile(r"\bnormal\b|\bnl\b|\bnk\b|\bdiploid\b|\bcn\b|no\s+abnormalit|no\s+clonal")
_MONOSOMAL_RE = re.compile(r"monosomal|\bmk\b")
_GT_RE = re.compile(r"(?:>=|>\s*=|at\s+least|min(?:imum)?\.?)\s*(\d{1,2})|(?:>|more\s+than)\s*(\d{1,2})")
_COUNT_RE = re.compile(r"(\d{1,2})\s*(?:abn|aberr|anomal|changes|lesions|alteration)")


# Already clean: top-level token characters and separators, groups without spaces, commas or slashes.
_CLEAN_RE = re.compile(r"(?:[^()\[\] ;:.,/]++|\([^()\[\],/ ]*\)|\[[^()\[\],/ ]*\]|[,/])*")


def clean(text: str) -> tuple[str, list[str]]:
    """Normalise a karyotype string so that it can be cut by plain ``str.split``.

    The result is lower case; inside parentheses and brackets it has no spaces, no commas and no
    slashes (``t(8,21)`` -> ``t(8;21)``); parentheses are balanced (a missing ``)`` is closed where
    the next token evidently starts); and top-level separators are ``,`` (clones) and ``/``.

    Parameters
    ----------
    text
        The raw karyotype (no FISH/array suffix: see :func:`split_molecular`).

    Returns
    -------
    tuple of (str, list of str)
        The cleaned string and the repairs made, worded for the parser's warnings.
    """
    if _CLEAN_RE.fullmatch(text):
        return text, []  # the common, well-formed case: nothing to repair
    warnings: list[str] = []
    out: list[str] = []
    depth_paren = False  # ISCN never nests parentheses in the karyotype proper, so depth is 0 or 1
    in_bracket = False
    n = len(text)
    pending_space = False
    i = 0
    while i < n:
        ch = text[i]
        if depth_paren:
            if ch == ")":
                depth_paren = False
                out.append(ch)
            elif ch == " ":
                pass  # spaces inside a group are typing noise: "t(8;21)(q22; q22)"
            elif ch == ",":
                # "t(8,21)" is a typo for ";" when a chromosome or band follows; otherwise the ")" was forgotten.
                j = i + 1
                while j < n and text[j] == " ":
                    j += 1
                if j < n and (text[j] in _DIGITS or text[j] in "xypq?c"):
                    out.append(";")
                    if "',' for ';' inside parentheses" not in warnings:
                        warnings.append("',' for ';' inside parentheses")
                else:
                    out.append("),")
                    warnings.append("missing ')' closed")
                    depth_paren = False
            elif ch in "([/":
                out.append(")")
                warnings.append("missing ')' closed")
                depth_paren = False
                continue  # re-read this character at top level
            else:
                out.append(ch)
            i += 1
            continue
        if in_bracket:
            if ch == "]":
                in_bracket = False
                out.append(ch)
            elif ch in "([/,":
                out.append("]")
                in_bracket = False
                warnings.append("missing ']' closed")
                continue
            elif ch != " ":
                out.append(ch)
            i += 1
            continue
        # top level
        if ch == " ":
            pending_space = True
            i += 1
            continue
        if ch == ")":
            warnings.append("unmatched ')' dropped")
            i += 1
            continue
        if ch in ";:":
            ch = ","
        elif ch == "." and not (out and out[-1] in _DIGITS and i + 1 < n and text[i + 1] in _DIGITS):
            ch = ","
        if pending_space:
            pending_space = False
            prev = out[-1] if out else ","
            # A space is a separator only between two token characters; around punctuation it is noise,
            # and after a leading sign ("+ 8") it is noise too.
            if prev not in ",/([" and ch not in ",/()[]" and not (prev in "+-" and (len(out) < 2 or out[-2] in ",/")):
                out.append(",")
        if ch == "(":
            depth_paren = True
        elif ch == "[":
            in_bracket = True
        out.append(ch)
        i += 1
    if depth_paren:
        out.append(")")
        warnings.append("missing ')' closed")
    if in_bracket:
        out.append("]")
    return "".join(out), warnings


def prepare(text: str) -> tuple[str, list[str]]:
    """Translate look-alike characters, lower-case, cut over-long text and rewrite English phrases."""
    warnings: list[str] = []
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        warnings.append(f"text longer than {MAX_CHARS} characters: cut")
    s = text.translate(_TRANSLATE)
    if not s.isprintable():
        s = "".join(c if c.isprintable() else " " for c in s)
    s = s.lower().strip()
    if _PHRASE_HINT_RE.search(s) is None:
        return s, warnings
    for pattern, repl in _PHRASES:
        if pattern.search(s):
            s = pattern.sub(repl, s)
    return s, warnings


def split_molecular(s: str) -> tuple[str, tuple[str, ...]]:
    """Cut FISH (``ish``, ``nuc ish``) and array (``arr``) results off the karyotype.

    Returns the karyotype part and each molecular segment, as written (lower case).
    """
    m = _MOLECULAR_RE.search(s)
    if m is None:
        return s, ()
    head = s[: m.start()].rstrip(" .,;")
    tail = s[m.start():]
    starts = [mm.start() for mm in _MOLECULAR_RE.finditer(tail)] + [len(tail)]
    segments = tuple(tail[a:b].strip(" .,;") for a, b in itertools.pairwise(starts))
    return head, tuple(seg for seg in segments if seg)


def split_parts(cleaned: str) -> tuple[list[list[str]], list[list[str]]]:
    """Cut a cleaned string into recipient and donor clones, each a list of tokens.

    ISCN 2016 writes the recipient's cells first and the donor's after ``//``.
    """
    if "//" in cleaned:
        recipient, _, donor = cleaned.partition("//")
        donor = donor.replace("//", "/")
    else:
        recipient, donor = cleaned, ""
    return _clones(recipient), _clones(donor)


def _clones(part: str) -> list[list[str]]:
    clones = []
    for clone in part.split("/"):
        tokens = [t for t in clone.split(",") if t]
        if tokens:
            clones.append(tokens)
    return clones


def strip_cell_count(token: str) -> tuple[str, int | None, bool, str | None]:
    """Take a cell count (``[20]``, ``[cp10]``, ``(20)``, ``20]``) off the end of a token.

    Returns
    -------
    tuple
        The token without the count, the count (None if absent), the ``cp`` flag, and a warning
        (None when the count was written correctly).
    """
    if token.endswith("]") or "[" in token:
        m = _CELLS_BRACKET_RE.search(token)
        if m is not None:
            body = _CELLS_BODY_RE.match(m.group("body"))
            head = token[: m.start()]
            if body is not None and not body.group("rest"):
                n = int(body.group("n")) if body.group("n") else None
                return head, n, bool(body.group("cp")), None
            return head, None, False, f"'[{m.group('body')}]': not a cell count"
        m = _CELLS_TRAIL_RE.search(token)
        if m is not None:
            return token[: m.start()], int(m.group("n")), False, f"'{token}': cell count without '['"
        return token.replace("]", ""), None, False, f"'{token}': stray ']'"
    if token.endswith(")"):
        m = _CELLS_PAREN_RE.search(token)
        if m is not None:
            head = token[: m.start()]
            # "i(17)" is a chromosome group, "46,xy(20)" and "del(5)(q13q33)(20)" carry a count.
            if head and (head[-1] in ")]" or head[-1] in _DIGITS or _SEXLIKE_RE.fullmatch(head)):
                return head, int(m.group("n")), False, f"'{token}': cell count in '()' instead of '[]'"
    return token, None, False, None


def classify_free_text(s: str) -> tuple[str, dict[str, int | bool]]:
    """Classify a string that holds no ISCN formula.

    Parameters
    ----------
    s
        The prepared (lower-case) text.

    Returns
    -------
    tuple of (str, dict)
        A status (``blank``, ``not_done``, ``no_growth``, ``failed``, ``free_text_complex``,
        ``free_text_abnormal``, ``free_text_normal`` or ``unreadable``) and hints read from the
        words: ``n`` (a stated number of abnormalities), ``n_min`` (a stated lower bound) and
        ``monosomal``.
    """
    core = s.strip(" .,;:")
    hints: dict[str, int | bool] = {}
    if core in _BLANK_WORDS:
        return "blank", hints
    if _NOT_DONE_RE.search(core):
        return "not_done", hints
    if _NO_GROWTH_RE.search(core):
        return "no_growth", hints
    if _FAILED_RE.search(core):
        return "failed", hints
    if _MONOSOMAL_RE.search(core):
        hints["monosomal"] = True
    if _COMPLEX_RE.search(core):
        m = _GT_RE.search(core)
        if m is not None:
            # ">3" means at least 4; ">=3" or "at least 3" means at least 3.
            hints["n_min"] = int(m.group(1)) if m.group(1) else int(m.group(2)) + 1
        elif (m := _COUNT_RE.search(core)) is not None:
            hints["n"] = int(m.group(1))  # "complex, 5 abnormalities": an exact count
        return "free_text_complex", hints
    if _ABNORMAL_RE.search(core):
        return "free_text_abnormal", hints
    if _NORMAL_RE.search(core):
        return "free_text_normal", hints
    return "unreadable", hints
