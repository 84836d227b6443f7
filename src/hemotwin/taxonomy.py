"""Cell classes, label sets and the mappings between them (docs/clinical_rules.md §11 as data).

Every label the package handles is a **canonical name**: either one of the 15 class codes of the
Matek AML scheme (``"NGS"``, ``"MYO"`` ...) or one of the coarser group names used by public data
sets (``"neutrophil"``, ``"ig"``, ``"platelet"`` ...). A **label set** is any ordered list of
canonical names, so a model can carry e.g. the 15 codes plus ``"platelet"``.

The names form a forest: each label has at most one parent (``NGS -> neutrophil``; ``neutrophil``
is itself a member of both the PBC and the five-class set). Collapsing probabilities to a coarser
set walks each label up this forest until it meets a member of the target set; labels that never
meet one (a blast scored against the five-class set) are **dropped**, never folded into a
neighbour, and the dropped probability mass is returned so a caller can refer such cells.

Import cost: numpy only (this module sits below everything else).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from hemotwin.errors import InputError

__all__ = [
    "BLAST_CODES",
    "CLASS_CODES",
    "CLASS_NAMES",
    "GROUP_NAMES",
    "LABEL_SETS",
    "PARENT",
    "SYNONYMS",
    "ancestors",
    "canonical_labels",
    "collapse",
    "collapse_matrix",
    "label_set",
    "members",
    "normalize_label_text",
    "resolve_label",
]

#: The 15 canonical white-cell codes, in the order of docs/clinical_rules.md §11, with their names.
CLASS_NAMES: dict[str, str] = {
    "MYO": "myeloblast",
    "MOB": "monoblast",
    "PMO": "promyelocyte",
    "PMB": "promyelocyte, bilobed",
    "MYB": "myelocyte",
    "MMZ": "metamyelocyte",
    "NGB": "neutrophil, band",
    "NGS": "neutrophil, segmented",
    "EOS": "eosinophil",
    "BAS": "basophil",
    "LYT": "lymphocyte, typical",
    "LYA": "lymphocyte, atypical (reactive)",
    "MON": "monocyte",
    "EBO": "erythroblast (nucleated red cell)",
    "KSC": "smudge cell",
}
CLASS_CODES: tuple[str, ...] = tuple(CLASS_NAMES)

#: Coarser group labels (PBC classes; the five WBC classes are a subset) with their names.
GROUP_NAMES: dict[str, str] = {
    "basophil": "basophil",
    "eosinophil": "eosinophil",
    "erythroblast": "erythroblast (nucleated red cell)",
    "ig": "immature granulocyte (promyelocyte, myelocyte, metamyelocyte)",
    "lymphocyte": "lymphocyte",
    "monocyte": "monocyte",
    "neutrophil": "neutrophil (segmented and band)",
    "platelet": "platelet",
}

#: Parent of each canonical label (absent = a root). MYO, MOB and KSC have no PBC parent on purpose:
#: normal-blood data sets have no class for them, and folding them into one would hide a blast.
PARENT: dict[str, str] = {
    "NGS": "neutrophil", "NGB": "neutrophil",
    "LYT": "lymphocyte", "LYA": "lymphocyte",
    "MON": "monocyte",
    "EOS": "eosinophil",
    "BAS": "basophil",
    "EBO": "erythroblast",
    "PMO": "ig", "PMB": "ig", "MYB": "ig", "MMZ": "ig",
}

#: Named label sets. ``"matek15+platelet"``-style sums are accepted by :func:`label_set`.
LABEL_SETS: dict[str, tuple[str, ...]] = {
    "matek15": CLASS_CODES,
    "pbc": ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte", "monocyte", "neutrophil", "platelet"),
    "wbc5": ("basophil", "eosinophil", "lymphocyte", "monocyte", "neutrophil"),
}

#: Blast codes (docs/clinical_rules.md §11, "blast (any)"); abnormal promyelocytes are not separable from PMO here.
BLAST_CODES: tuple[str, ...] = ("MYO", "MOB")


def canonical_labels() -> tuple[str, ...]:
    """Every canonical label: the 15 codes, then the group names."""
    return (*CLASS_CODES, *GROUP_NAMES)


def normalize_label_text(text: str) -> str:
    """The lookup key of a label as written (how synonyms are matched).

    Case-folded, accents stripped, ``_-.,()/`` and runs of spaces collapsed to one space, trimmed
    (``" Band_Neutrophil "`` -> ``"band neutrophil"``).
    """
    s = unicodedata.normalize("NFKD", str(text))
    s = "".join(c for c in s if not unicodedata.combining(c)).casefold()
    return re.sub(r"[\s_\-.,()/]+", " ", s).strip()


# Synonyms as written in real data sets (PBC folder and file prefixes, BCCD, Raabin, LISC, Matek,
# CellaVision exports, a few Spanish/German names). Keys are normalised with normalize_label_text.
# Group words ("neutrophil") map to the group, not to a code, because a plain "neutrophil" folder
# may hold bands as well as segmented cells; label_set resolution narrows it when unambiguous.
_SYNONYM_SOURCE: dict[str, tuple[str, ...]] = {
    "MYO": ("myeloblast", "myeloblasts", "blast", "blasts", "MBL"),
    "MOB": ("monoblast", "monoblasts"),
    "PMO": ("promyelocyte", "promyelocytes", "PMY"),
    "PMB": ("promyelocyte bilobed", "bilobed promyelocyte", "promyelocyte bilobulated"),
    "MYB": ("myelocyte", "myelocytes", "MY"),
    "MMZ": ("metamyelocyte", "metamyelocytes", "MMY", "meta"),
    "NGB": ("band", "bands", "band neutrophil", "neutrophil band", "banded neutrophil", "BNE", "stab",
            "stab neutrophil"),
    "NGS": ("segmented", "seg", "segs", "segmented neutrophil", "neutrophil segmented", "SNE",
            "polymorphonuclear"),
    "EOS": (),
    "BAS": (),
    "LYT": ("typical lymphocyte", "lymphocyte typical"),
    "LYA": ("atypical lymphocyte", "lymphocyte atypical", "reactive lymphocyte", "variant lymphocyte",
            "lymphocyte atypical reactive"),
    "MON": (),
    "EBO": (),
    "KSC": ("smudge", "smudge cell", "smudge cells", "basket cell", "gumprecht", "gumprecht shadow"),
    "neutrophil": ("neutrophils", "neut", "neutro", "NEU", "PMN", "neutrofilo", "neutrophiler granulozyt"),
    "lymphocyte": ("lymphocytes", "lymph", "lymp", "lympho", "LY", "linfocito", "lymphozyt"),
    "monocyte": ("monocytes", "mono", "MO", "monocito", "monozyt"),
    "eosinophil": ("eosinophils", "eosi", "eosino", "EO", "eosinofilo", "eosinophiler granulozyt"),
    "basophil": ("basophils", "baso", "BA", "basofilo", "basophiler granulozyt"),
    "erythroblast": ("erythroblasts", "ERB", "nrbc", "nrbcs", "nucleated red cell", "nucleated red blood cell",
                     "nucleated rbc", "normoblast", "normoblasts", "eritroblasto"),
    "ig": ("immature granulocyte", "immature granulocytes", "IGs"),
    "platelet": ("platelets", "PLT", "PLTs", "thrombocyte", "thrombocytes", "plaqueta", "thrombozyt",
                 "giant platelet"),
}


def _build_synonyms() -> dict[str, str]:
    table: dict[str, str] = {}
    for canon, words in _SYNONYM_SOURCE.items():
        for w in (canon, *words):
            key = normalize_label_text(w)
            if table.get(key, canon) != canon:  # a synonym must never mean two things
                raise RuntimeError(f"synonym {w!r} maps to both {table[key]} and {canon}")
            table[key] = canon
    # The codes' spelled-out names resolve to the code unless they name a group ("eosinophil").
    for code, name in CLASS_NAMES.items():
        table.setdefault(normalize_label_text(name), code)
    return table


#: Normalised spelling -> canonical label.
SYNONYMS: dict[str, str] = _build_synonyms()


def ancestors(label: str) -> tuple[str, ...]:
    """``label`` and its ancestors, nearest first (``"NGS"`` -> ``("NGS", "neutrophil")``)."""
    chain = [label]
    while chain[-1] in PARENT:
        chain.append(PARENT[chain[-1]])
    return tuple(chain)


def members(group: str) -> tuple[str, ...]:
    """The class codes under a group label, in :data:`CLASS_CODES` order.

    Parameters
    ----------
    group
        A group name of :data:`GROUP_NAMES` (``"ig"``, ``"lymphocyte"`` ...).

    Returns
    -------
    tuple of str
        Every code with ``group`` among its :func:`ancestors` (empty for a group without codes,
        e.g. ``"platelet"``).

    Examples
    --------
    >>> members("ig")
    ('PMO', 'PMB', 'MYB', 'MMZ')
    """
    return tuple(c for c in CLASS_CODES if group in ancestors(c)[1:])


def label_set(spec: str | Sequence[str], *, where: str = "label_set") -> tuple[str, ...]:
    """The canonical labels of a label set.

    Parameters
    ----------
    spec
        A named set (``"matek15"``, ``"pbc"``, ``"wbc5"``), a ``+``-joined sum of set names and labels
        (``"matek15+platelet"``), or a sequence of label names (synonyms allowed).
    where
        Named in errors.

    Returns
    -------
    tuple of str
        Canonical labels in order, without repeats.

    Examples
    --------
    >>> label_set("matek15+PLT")[-1]
    'platelet'
    >>> label_set(["Neutrophils", "lymphocyte"])
    ('neutrophil', 'lymphocyte')
    """
    if isinstance(spec, str):
        parts: list[str] = []
        for tok in spec.split("+"):
            key = tok.strip().lower()
            parts.extend(LABEL_SETS.get(key, (tok,)))
    else:
        parts = list(spec)
    if not parts or any(not str(p).strip() for p in parts):
        raise InputError(where, spec, f"a non-empty label set: one of {', '.join(LABEL_SETS)} or a list of labels")
    out: list[str] = []
    for p in parts:
        canon = resolve_label(p, where=where)
        if canon not in out:
            out.append(canon)
    return tuple(out)


def resolve_label(name: str, *, label_set: str | Sequence[str] | None = None, where: str = "label") -> str:
    """The canonical label meant by ``name``.

    Parameters
    ----------
    name
        A label as written in a folder name or manifest: a code, a group name or a known synonym, in
        any case, with ``_``, ``-`` or spaces (``"SNE"``, ``"Band_Neutrophil"``, ``"PLT"``).
    label_set
        When given, the result must belong to this set. A label outside it is mapped to its nearest
        ancestor in the set (``"SNE"`` with ``"pbc"`` -> ``"neutrophil"``) or, when exactly one
        member of the set descends from it, to that member (``"eosinophil"`` with ``"matek15"`` ->
        ``"EOS"``). ``"neutrophil"`` with ``"matek15"`` is ambiguous (NGS or NGB) and rejected.
    where
        The file, folder or row that holds ``name``; named in the error.

    Raises
    ------
    InputError
        Unknown name, or no unambiguous member of ``label_set``; the message lists the valid labels.
    """
    valid = _label_set_or_all(label_set)
    canon = SYNONYMS.get(normalize_label_text(name))
    if canon is None:
        key = normalize_label_text(name)
        if key.endswith("s"):  # plural folder names ("Eosinophils") not listed explicitly
            canon = SYNONYMS.get(key[:-1])
    if canon is None:
        raise InputError(where, name, _valid_text(valid, label_set))
    if label_set is None or canon in valid:
        return canon
    for anc in ancestors(canon)[1:]:
        if anc in valid:
            return anc
    below = [lab for lab in valid if canon in ancestors(lab)[1:]]
    if len(below) == 1:
        return below[0]
    extra = f" ({name!r} means {canon}, which could be any of {', '.join(below)})" if below else ""
    raise InputError(where, name, _valid_text(valid, label_set) + extra)


def _label_set_or_all(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    if spec is None:
        return canonical_labels()
    # Cached: a loader resolves thousands of rows against the same set.
    return _cached_label_set(spec if isinstance(spec, str) else tuple(spec))


@lru_cache(maxsize=64)
def _cached_label_set(spec: str | tuple[str, ...]) -> tuple[str, ...]:
    return label_set(spec)


def _valid_text(valid: Sequence[str], spec: object) -> str:
    which = "a known label" if spec is None else f"a label of {spec if isinstance(spec, str) else 'the label set'}"
    return f"{which}: one of {', '.join(valid)} (or a synonym, e.g. SNE, band, PLT, nrbc)"


def collapse_matrix(from_labels: str | Sequence[str], to_set: str | Sequence[str]) -> np.ndarray:
    """The 0/1 matrix that sums probabilities over ``from_labels`` into ``to_set``.

    ``M`` (``len(from) x len(to)``) has ``M[i, j] = 1`` when ``to[j]`` is the nearest ancestor of
    ``from[i]`` (or ``from[i]`` itself) in ``to_set``.

    Rows of zeros are labels with no ancestor in ``to_set`` (e.g. MYO, MOB, KSC into PBC; erythroblast,
    ig, platelet into wbc5). Collapsing only goes up: a coarse label never spreads into finer ones.

    Examples
    --------
    >>> collapse_matrix(["NGS", "NGB", "MYO"], "wbc5")[:, 4].tolist()
    [1.0, 1.0, 0.0]
    """
    src = label_set(from_labels, where="from_labels")
    dst = label_set(to_set, where="to_set")
    col = {lab: j for j, lab in enumerate(dst)}
    m = np.zeros((len(src), len(dst)), dtype=np.float64)
    for i, lab in enumerate(src):
        hit = next((a for a in ancestors(lab) if a in col), None)
        if hit is not None:
            m[i, col[hit]] = 1.0
    return m


def collapse(probs: np.ndarray, from_labels: str | Sequence[str], to_set: str | Sequence[str], *,
             renormalize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities over a fine label set summed into a coarser one.

    Each coarse class receives the sum of its descendants' probabilities. Classes with no ancestor in
    ``to_set`` are **dropped** (their mass is not given to any class), then each row is renormalised
    to sum to 1 over what remains. A cell that the model thinks is a blast therefore does not become a
    confident neutrophil in the five-class set: its ``dropped`` mass is high, and callers should refer
    or exclude such rows (e.g. ``dropped > 0.5``) rather than trust the renormalised arg-max.

    Parameters
    ----------
    probs
        ``(n_from,)`` or ``(N, n_from)`` non-negative scores (normally softmax outputs).
    from_labels, to_set
        Label sets (see :func:`label_set`) of ``probs``' columns and of the result.
    renormalize
        When False, return the raw sums (rows then total ``1 - dropped`` for softmax input).

    Returns
    -------
    collapsed : ndarray
        ``(len(to_set),)`` or ``(N, len(to_set))`` float64. A row whose whole mass was dropped is NaN
        when renormalising (there is nothing to renormalise; NaN refuses to be mistaken for a class).
    dropped : ndarray
        Fraction of each row's mass that fell on classes with no parent in ``to_set``: ``()`` or ``(N,)``.
    """
    p = np.asarray(probs, dtype=np.float64)
    m = collapse_matrix(from_labels, to_set)
    if p.ndim not in (1, 2) or p.shape[-1] != m.shape[0]:
        raise InputError("probs", f"shape {p.shape}", f"(N, {m.shape[0]}) or ({m.shape[0]},), one column per label")
    if not np.all(np.isfinite(p)) or np.any(p < 0):
        raise InputError("probs", "negative or non-finite values", "finite non-negative probabilities")
    total = p.sum(axis=-1)
    kept = p @ m
    kept_total = kept.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        dropped = np.where(total > 0, 1.0 - kept_total / total, 0.0)
        if renormalize:
            kept = kept / np.expand_dims(kept_total, -1)  # 0/0 -> NaN on fully dropped rows, on purpose
    return kept, np.clip(dropped, 0.0, 1.0)
