"""Mutation features from a MAF-like table: gene calls, FLT3-ITD/TKD, KMT2A-PTD, CEBPA bZIP, TP53.

Everything here is numpy-only (no pandas import) so that scoring one patient stays fast; the cohort
path (:func:`mutation_matrix`) imports pandas inside the function.

**Not sequenced is not wild type.** Every gene-level feature is three-valued: ``1.0`` mutated,
``0.0`` sequenced and wild type, ``NaN`` not sequenced (unknown). A patient's panel is given by
``sequenced_genes``: ``None`` means *the panel is unknown* (only the genes with a reported mutation
are known, as mutated), ``"all"`` means every gene the scores use was sequenced.

Rules and sources
-----------------
- FLT3-ITD: ``EFFECT`` ``ITD`` (docs/clinical_rules.md §9), or an in-frame insertion/duplication of FLT3 in
  the juxtamembrane region, codons 570-640 *(confirm)*: FLT3-ITDs are in-frame duplications in exons
  14-15 (Kiyoi et al., Leukemia 1997; Schnittger et al., Blood 2002).
- FLT3-TKD: a change at codon D835 or I836 (including deletions there) (Yamamoto et al., Blood 2001).
- KMT2A-PTD: ``EFFECT`` ``PTD`` on KMT2A (alias MLL) (docs/clinical_rules.md §9; IPSS-M ``MLL_PTD``).
- CEBPA bZIP in-frame: an in-frame insertion/deletion/duplication or a missense change with protein
  position 278-345 (the basic region and leucine zipper), following Taube et al., Blood
  2022;139:87 and Tarlock et al., Blood 2021;138:1137 *(confirm the exact boundaries)*; ELN 2022
  Table 6 note (c) (docs/clinical_rules.md §3).
- TP53 VAF >= 10 %: ELN 2022 Table 6 note (i) (docs/clinical_rules.md §3).
- TP53 multi-hit: >= 2 TP53 mutations, or 1 with max VAF > 0.55, or 1 with del(17p)/-17
  (IPSS-M, Bernard et al., NEJM Evid 2022; docs/clinical_rules.md §7; ``ipssm`` R package ``IPSSMprocess``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from hemotwin.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

# --------------------------------------------------------------------------------------------------
# Gene lists
# --------------------------------------------------------------------------------------------------

#: IPSS-M main-effect genes (docs/clinical_rules.md §7; Bernard et al. 2022). SF3B1 enters as SF3B1_5q/_alpha.
IPSSM_MAIN_GENES: tuple[str, ...] = ("ASXL1", "CBL", "DNMT3A", "ETV6", "EZH2", "FLT3", "IDH2", "KMT2A", "KRAS",
                                     "NPM1", "NRAS", "RUNX1", "SF3B1", "SRSF2", "TP53", "U2AF1")
#: IPSS-M residual genes counted in NRES2 (docs/clinical_rules.md §7).
IPSSM_RESIDUAL_GENES: tuple[str, ...] = ("BCOR", "BCORL1", "CEBPA", "ETNK1", "GATA2", "GNB1", "IDH1", "NF1", "PHF6",
                                         "PPM1D", "PRPF8", "PTPN11", "SETBP1", "STAG2", "WT1")
#: Myelodysplasia-related genes of ELN 2022 (Table 6 note h; docs/clinical_rules.md §3).
ELN2022_MR_GENES: tuple[str, ...] = ("ASXL1", "BCOR", "EZH2", "RUNX1", "SF3B1", "SRSF2", "STAG2", "U2AF1", "ZRSR2")
#: Every gene ELN 2022 reads (docs/clinical_rules.md §3).
ELN2022_GENES: tuple[str, ...] = ("NPM1", "FLT3", "CEBPA", "TP53", "KIT", "KMT2A", *ELN2022_MR_GENES)
#: Every gene ELN 2024 (less-intensive) reads (docs/clinical_rules.md §4).
ELN2024_GENES: tuple[str, ...] = ("NPM1", "IDH1", "IDH2", "DDX41", "FLT3", "NRAS", "KRAS", "TP53")
#: Every gene any score reads: the panel meant by ``sequenced_genes="all"``.
SCORED_GENES: tuple[str, ...] = tuple(sorted({*IPSSM_MAIN_GENES, *IPSSM_RESIDUAL_GENES, *ELN2022_GENES,
                                              *ELN2024_GENES}))
#: Genes of common myeloid NGS panels; a gene outside this list is accepted with a warning (typo guard).
KNOWN_GENES: frozenset[str] = frozenset({
    *SCORED_GENES, "ASXL2", "ATRX", "BCL6", "BRAF", "BRCC3", "CALR", "CBLB", "CCND2", "CCND3", "CDKN2A", "CREBBP",
    "CSF1R", "CSF3R", "CSNK1A1", "CTCF", "CUX1", "DHX15", "EP300", "ERBB4", "FBXW7", "GATA1", "GNAS", "IKZF1",
    "IRF1", "JAK1", "JAK2", "JAK3", "KDM5C", "KDM6A", "KMT2C", "KMT2D", "LUC7L2", "MECOM", "MPL", "MYC", "MYD88",
    "NFE2", "NOTCH1", "PDGFRA", "PIGA", "PTEN", "RAD21", "RB1", "RIT1", "SAMD9", "SAMD9L", "SF1", "SF3A1", "SH2B3",
    "SMC1A", "SMC3", "STAG1", "STAT3", "STAT5B", "SUZ12", "TET2", "U2AF2", "UBA1", "ZBTB33", "ZRSR2", "BLM", "CHEK2",
    "DDX23", "IDH3A", "KMT2E", "MLH1", "MSH2", "NOTCH2", "PRPF40B", "RAD50", "SRP72", "TERT", "TERC", "ZNF318",
})
#: Old or alternative symbols -> HGNC symbol.
GENE_ALIASES: dict[str, str] = {"MLL": "KMT2A", "MLL1": "KMT2A", "EVI1": "MECOM", "C-KIT": "KIT", "CKIT": "KIT",
                                "P53": "TP53", "MLL2": "KMT2D", "MLL3": "KMT2C"}

#: EFFECT values of docs/clinical_rules.md §9 (lower case); others are accepted with a warning.
KNOWN_EFFECTS: frozenset[str] = frozenset({"non_synonymous_codon", "frameshift_variant", "stop_gained",
                                           "splice_site_variant", "inframe_deletion", "inframe_insertion", "ptd",
                                           "itd", "stop_lost", "start_lost", "initiator_codon_change",
                                           "inframe_variant", "missense_variant", "splice_region_variant"})

#: CEBPA bZIP region, protein positions (Taube et al. 2022; Tarlock et al. 2021) *(confirm)*.
CEBPA_BZIP = (278, 345)
#: FLT3 juxtamembrane/TKD1 window where in-frame insertions are called ITD *(confirm)*.
FLT3_ITD_WINDOW = (570, 640)
#: ELN 2022 TP53 threshold (Table 6 note i): VAF >= 10 %.
TP53_ELN_VAF = 0.10
#: IPSS-M loss-of-heterozygosity proxy: max TP53 VAF > 0.55 (ipssm ``IPSSMprocess``).
TP53_LOH_VAF = 0.55

_INFRAME_EFFECTS = frozenset({"inframe_deletion", "inframe_insertion", "inframe_variant", "itd"})
_MISSENSE_EFFECTS = frozenset({"non_synonymous_codon", "missense_variant"})
_POS_RE = re.compile(r"[A-Za-z*]{0,3}?(\d+)")
_TKD_RE = re.compile(r"(?:^|[^0-9])(?:D|ASP)?835|(?:^|[^0-9])(?:I|ILE)?836(?![0-9])", re.IGNORECASE)


def normalize_gene(name: Any) -> str:
    """Upper-case, trimmed HGNC symbol with common aliases resolved (``MLL`` -> ``KMT2A``)."""
    g = str(name).strip().upper()
    return GENE_ALIASES.get(g, g)


def resolve_panel(sequenced_genes: Iterable[str] | str | None) -> frozenset[str] | None:
    """The set of sequenced genes: ``None`` (panel unknown), ``"all"`` (:data:`SCORED_GENES`) or a list."""
    if sequenced_genes is None:
        return None
    if isinstance(sequenced_genes, str):
        if sequenced_genes.strip().lower() == "all":
            return frozenset(SCORED_GENES)
        sequenced_genes = [g for g in re.split(r"[,\s;]+", sequenced_genes) if g]
    return frozenset(normalize_gene(g) for g in sequenced_genes if str(g).strip())


def protein_position(change: str) -> int | None:
    """First amino-acid position of a protein change (``p.D835Y`` -> 835, ``Q305_Q306insL`` -> 305)."""
    s = change.strip()
    if s[:2].lower() == "p.":
        s = s[2:]
    m = _POS_RE.match(s)
    return int(m.group(1)) if m else None


def _looks_inframe(effect: str, change: str) -> bool | None:
    """In-frame indel by EFFECT, else by HGVS text (``ins``/``del``/``dup`` without ``fs``); None = unknown."""
    if effect:
        return effect in _INFRAME_EFFECTS
    c = change.lower()
    if not c:
        return None
    return ("ins" in c or "del" in c or "dup" in c) and "fs" not in c and "*" not in c and "ter" not in c


def _looks_missense(effect: str, change: str) -> bool | None:
    if effect:
        return effect in _MISSENSE_EFFECTS
    c = change.strip()
    if not c:
        return None
    return re.fullmatch(r"(?:p\.)?[A-Za-z]{1,3}\d+[A-Za-z]{1,3}", c) is not None and not c.endswith("fs")


def classify_variant(gene: str, effect: str, change: str) -> dict[str, float]:
    """Per-variant flags (1.0 yes, 0.0 no, NaN cannot tell) for FLT3-ITD/TKD, KMT2A-PTD and CEBPA bZIP.

    Parameters
    ----------
    gene
        Normalised symbol (see :func:`normalize_gene`).
    effect
        EFFECT value (any case; blank if unknown).
    change
        Protein change (HGVS-like; blank if unknown).
    """
    eff = (effect or "").strip().lower()
    chg = (change or "").strip()
    out = {"flt3_itd": 0.0, "flt3_tkd": 0.0, "kmt2a_ptd": 0.0, "cebpa_bzip": 0.0}
    if gene == "FLT3":
        pos = protein_position(chg) if chg else None
        inframe = _looks_inframe(eff, chg)
        if eff == "itd" or "ITD" in chg.upper():
            out["flt3_itd"] = 1.0
        elif inframe and pos is not None and FLT3_ITD_WINDOW[0] <= pos <= FLT3_ITD_WINDOW[1] and \
                ("ins" in chg.lower() or "dup" in chg.lower() or eff == "inframe_insertion"):
            out["flt3_itd"] = 1.0
        elif pos in (835, 836):
            out["flt3_tkd"] = 1.0
        elif not eff and not chg:
            out["flt3_itd"] = out["flt3_tkd"] = math.nan
    elif gene == "KMT2A":
        out["kmt2a_ptd"] = 1.0 if (eff == "ptd" or "PTD" in chg.upper()) else (math.nan if not eff and not chg
                                                                               else 0.0)
    elif gene == "CEBPA":
        pos = protein_position(chg) if chg else None
        inframe, missense = _looks_inframe(eff, chg), _looks_missense(eff, chg)
        if inframe is None and missense is None:
            out["cebpa_bzip"] = math.nan
        elif inframe or missense:
            if pos is None:
                out["cebpa_bzip"] = math.nan
            else:
                out["cebpa_bzip"] = 1.0 if CEBPA_BZIP[0] <= pos <= CEBPA_BZIP[1] else 0.0
    return out


#: Columns of the mutation feature matrix besides ``MUT_<GENE>`` (see :func:`mutation_arrays`).
FLAG_COLUMNS: tuple[str, ...] = ("FLT3_ITD", "FLT3_TKD", "FLT3_ITD_TKD", "KMT2A_PTD", "CEBPA_BZIP", "TP53_N",
                                 "TP53_MAXVAF", "TP53_GE10")


def mutation_arrays(patient: np.ndarray, n: int, genes: Sequence[str], vaf: np.ndarray, effects: Sequence[str],
                    changes: Sequence[str], *, panel: frozenset[str] | None) -> dict[str, np.ndarray]:
    """Per-patient mutation features from per-variant rows (the one implementation both paths share).

    Parameters
    ----------
    patient
        Row -> patient index (0 .. n-1) for every variant row.
    n
        Number of patients.
    genes, vaf, effects, changes
        Per-row normalised gene symbol, VAF fraction (NaN unknown), EFFECT and protein change.
    panel
        Sequenced genes (same for all patients here), or ``None`` when unknown.

    Returns
    -------
    dict
        ``MUT_<GENE>`` for every gene of :data:`SCORED_GENES` and every gene seen; ``<GENE>_N`` counts are
        not kept except ``TP53_N``; plus :data:`FLAG_COLUMNS`. Values are 1.0 / 0.0 / NaN (unknown).
    """
    patient = np.asarray(patient, dtype=np.intp)
    vaf = np.asarray(vaf, dtype=float)
    genes_arr = np.asarray(list(genes), dtype=object)
    panel_set = panel or frozenset()
    out: dict[str, np.ndarray] = {}

    def gene_known(g: str) -> np.ndarray:
        # A gene is known wild type only if it is in the panel; a reported mutation makes it known anyway.
        return np.full(n, 0.0 if g in panel_set else math.nan)

    for g in sorted({*SCORED_GENES, *map(str, genes_arr)}):
        col = gene_known(g)
        rows = genes_arr == g
        col[patient[rows]] = 1.0
        out[f"MUT_{g}"] = col

    flags = {k: np.zeros(len(genes_arr)) for k in ("flt3_itd", "flt3_tkd", "kmt2a_ptd", "cebpa_bzip")}
    for i in np.flatnonzero(np.isin(genes_arr, ["FLT3", "KMT2A", "CEBPA"])):
        for k, v in classify_variant(genes_arr[i], effects[i], changes[i]).items():
            flags[k][i] = v

    def combine(gene: str, row_flag: np.ndarray) -> np.ndarray:
        # Patient flag: any 1 -> 1; else any NaN (a variant we cannot classify) -> NaN; else the gene state.
        base = np.where(np.isnan(out[f"MUT_{gene}"]), math.nan, 0.0)
        rows = genes_arr == gene
        unknown = np.zeros(n, dtype=bool)
        unknown[patient[rows & np.isnan(row_flag)]] = True
        base[unknown] = math.nan
        yes = np.zeros(n, dtype=bool)
        yes[patient[rows & (row_flag == 1.0)]] = True
        base[yes] = 1.0
        return base

    out["FLT3_ITD"] = combine("FLT3", flags["flt3_itd"])
    out["FLT3_TKD"] = combine("FLT3", flags["flt3_tkd"])
    out["FLT3_ITD_TKD"] = np.where((out["FLT3_ITD"] == 1) | (out["FLT3_TKD"] == 1), 1.0,
                                   np.where(np.isnan(out["FLT3_ITD"]) | np.isnan(out["FLT3_TKD"]), math.nan, 0.0))
    out["KMT2A_PTD"] = combine("KMT2A", flags["kmt2a_ptd"])
    out["CEBPA_BZIP"] = combine("CEBPA", flags["cebpa_bzip"])

    tp = genes_arr == "TP53"
    count = np.bincount(patient[tp], minlength=n).astype(float)
    out["TP53_N"] = np.where(np.isnan(out["MUT_TP53"]), math.nan, count)
    maxvaf = np.full(n, -np.inf)
    np.maximum.at(maxvaf, patient[tp], np.where(np.isnan(vaf[tp]), -np.inf, vaf[tp]))
    maxvaf[~np.isfinite(maxvaf)] = math.nan
    out["TP53_MAXVAF"] = maxvaf
    # ELN 2022 note (i): TP53 adverse at VAF >= 10 %; a TP53 mutation without a VAF cannot be placed.
    ge10 = np.where(np.isnan(maxvaf), math.nan, (maxvaf >= TP53_ELN_VAF).astype(float))
    out["TP53_GE10"] = np.where(count > 0, ge10, out["MUT_TP53"])
    return out


def tp53_multihit(n_mut: np.ndarray, max_vaf: np.ndarray, minus17: np.ndarray) -> np.ndarray:
    """IPSS-M TP53 multi-hit (docs/clinical_rules.md §7): >= 2 mutations, or 1 with VAF > 0.55 or del(17p)/-17.

    All inputs are float arrays with NaN = unknown; returns 1.0 / 0.0 / NaN. One mutation whose VAF
    is <= 0.55 is single-hit only when the karyotype shows no -17/17p loss (a failed karyotype leaves
    it unknown, as in the published calculator where TP53loh is then ``NA``).
    """
    n_mut = np.asarray(n_mut, dtype=float)
    max_vaf = np.asarray(max_vaf, dtype=float)
    minus17 = np.asarray(minus17, dtype=float)
    loh = np.where((max_vaf > TP53_LOH_VAF) | (minus17 == 1.0), 1.0,
                   np.where(~np.isnan(max_vaf) & (minus17 == 0.0), 0.0, math.nan))
    one = np.where(loh == 1.0, 1.0, np.where(loh == 0.0, 0.0, math.nan))
    return np.where(n_mut >= 2, 1.0, np.where(n_mut == 1, one, np.where(n_mut == 0, 0.0, math.nan)))


# --------------------------------------------------------------------------------------------------
# One patient
# --------------------------------------------------------------------------------------------------


class Mutation(BaseModel):
    """One somatic variant (the molecular columns of docs/clinical_rules.md §9 a score needs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gene: str
    vaf: float | None = Field(None, description="Variant allele fraction 0-1 (percent accepted, see Patient).")
    effect: str = ""
    protein_change: str = ""

    @field_validator("gene")
    @classmethod
    def _gene(cls, v: str) -> str:
        g = normalize_gene(v)
        if not g:
            raise ValueError("a gene symbol")
        return g


class GeneCall(BaseModel):
    """Gene-level call: number of variants and the largest VAF (None if no VAF given)."""

    model_config = ConfigDict(frozen=True)

    gene: str
    n: int
    max_vaf: float | None = None


class MutationFeatures(BaseModel):
    """Mutation features of one patient; ``None`` = unknown (gene not sequenced), never the same as ``False``."""

    model_config = ConfigDict(frozen=True)

    panel: tuple[str, ...] | None = Field(None, description="Sequenced genes; None = panel unknown.")
    calls: tuple[GeneCall, ...] = ()
    flt3_itd: bool | None = None
    flt3_tkd: bool | None = None
    kmt2a_ptd: bool | None = None
    cebpa_bzip_inframe: bool | None = None
    tp53_n: int | None = None
    tp53_max_vaf: float | None = None
    tp53_vaf_ge10: bool | None = None
    tp53_multihit: bool | None = None
    warnings: tuple[str, ...] = ()

    def status(self, gene: str) -> bool | None:
        """True mutated, False sequenced wild type, None not sequenced (unknown)."""
        g = normalize_gene(gene)
        if any(c.gene == g for c in self.calls):
            return True
        return False if self.panel is not None and g in self.panel else None


def _b(x: float) -> bool | None:
    return None if math.isnan(x) else bool(x)


def check_vafs(vafs: Sequence[float | None], *, where: str) -> tuple[list[float | None], list[str]]:
    """Fractions from the VAFs of one sample: all >= 1 (and <= 100) -> percent, with a warning.

    Raises
    ------
    InputError
        A VAF below 0 or above 100, or a sample mixing values above 1 with values below 1.
    """
    known = [v for v in vafs if v is not None and not math.isnan(v)]
    for v in known:
        if v < 0 or v > 100:
            raise InputError(where, v, "a variant allele fraction between 0 and 1 (or a percentage 0-100)")
    if not any(v > 1 for v in known):
        return list(vafs), []
    if any(v < 1 for v in known):
        raise InputError(where, next(v for v in known if v > 1), "a fraction between 0 and 1 (this sample mixes "
                         "values above 1 with values below 1: give all its VAFs as fractions, or all as percent)")
    return [None if v is None or math.isnan(v) else v / 100.0 for v in vafs], [
        "every VAF is >= 1: read as percent and divided by 100"]


def mutation_features(mutations: Sequence[Mutation], *, sequenced_genes: Iterable[str] | str | None = None,
                      minus17: bool | None = None, where: str = "mutations") -> MutationFeatures:
    """Mutation features of one patient (see the module docstring for every rule and its source).

    Parameters
    ----------
    mutations
        The patient's variants.
    sequenced_genes
        The panel: a list of genes, ``"all"`` (every gene the scores use), or ``None`` (unknown: genes
        without a reported variant are *not sequenced*, not wild type).
    minus17
        -17/abn(17p) from the karyotype (for TP53 multi-hit); ``None`` if unknown.
    where
        Name used in messages.
    """
    panel = resolve_panel(sequenced_genes)
    vafs, warns = check_vafs([m.vaf for m in mutations], where=f"{where}.vaf")
    unknown = sorted({m.gene for m in mutations} - KNOWN_GENES)
    if unknown:
        warns.append(f"gene(s) not in the known myeloid panel list, kept as given: {', '.join(unknown)}")
    genes = [m.gene for m in mutations]
    arr = mutation_arrays(np.zeros(len(mutations), dtype=np.intp), 1, genes,
                          np.array([math.nan if v is None else v for v in vafs], dtype=float),
                          [m.effect for m in mutations], [m.protein_change for m in mutations], panel=panel)
    calls = []
    for g in dict.fromkeys(genes):
        v = [x for x, gg in zip(vafs, genes, strict=True) if gg == g and x is not None]
        calls.append(GeneCall(gene=g, n=genes.count(g), max_vaf=max(v) if v else None))
    multi = tp53_multihit(arr["TP53_N"], arr["TP53_MAXVAF"], np.array([math.nan if minus17 is None else
                                                                       float(minus17)]))
    n53 = arr["TP53_N"][0]
    v53 = arr["TP53_MAXVAF"][0]
    return MutationFeatures(
        panel=tuple(sorted(panel | set(genes))) if panel is not None else None, calls=tuple(calls),
        flt3_itd=_b(arr["FLT3_ITD"][0]), flt3_tkd=_b(arr["FLT3_TKD"][0]), kmt2a_ptd=_b(arr["KMT2A_PTD"][0]),
        cebpa_bzip_inframe=_b(arr["CEBPA_BZIP"][0]), tp53_n=None if math.isnan(n53) else int(n53),
        tp53_max_vaf=None if math.isnan(v53) else float(v53), tp53_vaf_ge10=_b(arr["TP53_GE10"][0]),
        tp53_multihit=_b(multi[0]), warnings=tuple(warns))


# --------------------------------------------------------------------------------------------------
# Cohort
# --------------------------------------------------------------------------------------------------


def mutation_matrix(molecular: pd.DataFrame | None, ids: Sequence[Any], *,
                    sequenced_genes: Iterable[str] | str | None = None) -> pd.DataFrame:
    """Per-patient mutation features for a cohort, from a validated molecular table.

    Parameters
    ----------
    molecular
        Output of :func:`hemotwin.prognosis.tables.read_molecular` (``ID``, ``GENE``, optional ``VAF``,
        ``EFFECT``, ``PROTEIN_CHANGE``); rows whose ID is not in ``ids`` are ignored. ``None`` = no
        molecular data at all (every gene unknown).
    ids
        Patient IDs, in output order.
    sequenced_genes
        The panel applied to every patient. Default: every gene seen anywhere in ``molecular`` (a
        cohort sequenced on one panel); ``"all"`` or an explicit list override it.

    Returns
    -------
    pandas.DataFrame
        Index ``ID``; columns ``MUT_<GENE>`` and :data:`FLAG_COLUMNS`; 1.0 / 0.0 / NaN (not sequenced).
    """
    import pandas as pd

    ids = pd.Index([str(i) for i in ids], name="ID")
    if molecular is None or len(molecular) == 0:
        panel = resolve_panel(sequenced_genes) if sequenced_genes is not None else \
            (frozenset() if molecular is None else None)
        arr = mutation_arrays(np.zeros(0, dtype=np.intp), len(ids), [], np.zeros(0), [], [], panel=panel)
        return pd.DataFrame(arr, index=ids)
    mol = molecular[molecular["ID"].astype(str).isin(ids)]
    genes = [normalize_gene(g) for g in mol["GENE"]]
    if sequenced_genes is None:
        panel = frozenset(normalize_gene(g) for g in molecular["GENE"])
    else:
        panel = resolve_panel(sequenced_genes)
    col = lambda name: (mol[name].fillna("").astype(str).tolist() if name in mol.columns  # noqa: E731
                        else [""] * len(mol))
    vaf = mol["VAF"].to_numpy(dtype=float) if "VAF" in mol.columns else np.full(len(mol), math.nan)
    arr = mutation_arrays(ids.get_indexer(mol["ID"].astype(str)), len(ids), genes, vaf, col("EFFECT"),
                          col("PROTEIN_CHANGE"), panel=panel)
    return pd.DataFrame(arr, index=ids)


__all__ = [
    "CEBPA_BZIP",
    "ELN2022_GENES",
    "ELN2022_MR_GENES",
    "ELN2024_GENES",
    "FLAG_COLUMNS",
    "GENE_ALIASES",
    "IPSSM_MAIN_GENES",
    "IPSSM_RESIDUAL_GENES",
    "KNOWN_EFFECTS",
    "KNOWN_GENES",
    "SCORED_GENES",
    "GeneCall",
    "Mutation",
    "MutationFeatures",
    "check_vafs",
    "classify_variant",
    "k_and",
    "k_not",
    "k_or",
    "mutation_arrays",
    "mutation_features",
    "mutation_matrix",
    "normalize_gene",
    "protein_position",
    "resolve_panel",
    "tp53_multihit",
]


# --------------------------------------------------------------------------------------------------
# Three-valued (Kleene) logic over feature arrays: 1.0 true, 0.0 false, NaN unknown
# --------------------------------------------------------------------------------------------------


def k_and(*xs: np.ndarray) -> np.ndarray:
    """Kleene AND: false if any input is false, else unknown if any is unknown, else true."""
    a = np.vstack([np.asarray(x, dtype=float) for x in xs])
    return np.where((a == 0.0).any(axis=0), 0.0, np.where(np.isnan(a).any(axis=0), math.nan, 1.0))


def k_or(*xs: np.ndarray) -> np.ndarray:
    """Kleene OR: true if any input is true, else unknown if any is unknown, else false."""
    a = np.vstack([np.asarray(x, dtype=float) for x in xs])
    return np.where((a == 1.0).any(axis=0), 1.0, np.where(np.isnan(a).any(axis=0), math.nan, 0.0))


def k_not(x: np.ndarray) -> np.ndarray:
    """Kleene NOT (unknown stays unknown)."""
    return 1.0 - np.asarray(x, dtype=float)
