"""Feature matrix of a cohort for the survival models: counts, karyotype, mutations, published scores.

The design is *specified* once on the training cohort (:func:`fit_design` -> :class:`DesignSpec`:
which genes are frequent enough to be columns, which published scores enter as features) and then
*built* identically on any cohort (:func:`build_design`), so that a saved model predicts new
patients with exactly its training columns. Missing values stay ``NaN``; the models impute.

Columns
-------
- counts: ``BM_BLAST`` (%), ``WBC``, ``ANC``, ``MONOCYTES``, ``PLT`` (x10^9/L), ``HB`` (g/dL), ``AGE``
  (years) when present, in their clinical units (so Cox coefficients read per unit);
- karyotype (from :func:`hemotwin.prognosis.karyotype_features.karyotype_features`): ``KARYO_EVALUABLE``,
  ``KARYO_NORMAL``, ``COMPLEX``, ``MONOSOMAL``, ``N_ABNORMALITIES`` and the recurrent lesions,
  ``CYTO_IPSSR`` (IPSS-R group coded 0..4); unknown = NaN;
- mutations (from :func:`hemotwin.prognosis.mutations.mutation_matrix`): ``MUT_<GENE>`` for genes
  mutated in at least ``min_gene_count`` training patients, ``TP53_MULTIHIT`` (IPSS-M rule),
  ``TP53_MAXVAF``, ``FLT3_ITD``, ``FLT3_TKD``, ``KMT2A_PTD``, ``N_MUTATIONS``, ``MAX_VAF``; optionally
  ``VAF_<GENE>`` (largest VAF of each kept gene, 0 when wild type);
- published scores as features (optional): ``IPSSM_SCORE``, ``IPSSR_SCORE`` ...

For research use only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from hemotwin.errors import InputError

__all__ = [
    "BASELINE_SCORES",
    "COUNT_COLUMNS",
    "KARYOTYPE_COLUMNS",
    "DesignSpec",
    "align_cohort",
    "build_design",
    "fit_design",
    "karyotype_matrix",
    "published_scores",
]

COUNT_COLUMNS = ("BM_BLAST", "WBC", "ANC", "MONOCYTES", "HB", "PLT", "AGE")
#: design column -> KaryotypeFeatures field (booleans become 1/0, None NaN).
_KARYO_FIELDS: dict[str, str] = {
    "KARYO_EVALUABLE": "evaluable", "KARYO_NORMAL": "normal", "COMPLEX": "complex", "MONOSOMAL": "monosomal",
    "N_ABNORMALITIES": "n_abnormalities", "DEL5Q": "del5q", "MINUS5": "minus5", "MINUS7": "minus7",
    "DEL7Q": "del7q", "PLUS8": "plus8", "DEL20Q": "del20q", "MINUS_Y": "minus_y", "ABN17P": "minus17_abn17p",
    "ABN3Q": "abn3q", "DEL11Q": "del11q", "DEL12P": "del12p",
}
KARYOTYPE_COLUMNS = (*_KARYO_FIELDS, "CYTO_IPSSR")
_MUTATION_EXTRAS = ("TP53_MULTIHIT", "FLT3_ITD", "FLT3_TKD", "KMT2A_PTD", "N_MUTATIONS", "MAX_VAF")
#: Published scores used as baselines (docs/clinical_rules.md §8): column of ``score_cohort`` -> label.
BASELINE_SCORES: dict[str, str] = {"IPSSM_SCORE": "IPSS-M", "IPSSR_SCORE": "IPSS-R", "ELN2022": "ELN 2022"}
_IPSSR_CODE = {"very_good": 0, "good": 1, "intermediate": 2, "poor": 3, "very_poor": 4}


class DesignSpec(BaseModel):
    """Which columns a design has; fitted on the training cohort and stored with the model."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    counts: tuple[str, ...] = Field(COUNT_COLUMNS, description="Clinical numeric columns used.")
    karyotype: bool = Field(True, description="Add the karyotype features.")
    genes: tuple[str, ...] = Field((), description="Genes with a MUT_<GENE> column.")
    vaf_columns: bool = Field(False, description="Add VAF_<GENE> for every gene in `genes`.")
    mutation_extras: bool = Field(True, description="TP53 multi-hit, FLT3-ITD/TKD, KMT2A-PTD, counts of mutations.")
    scores: tuple[str, ...] = Field((), description="Published scores used as features (score_cohort columns).")
    sequenced_genes: tuple[str, ...] | str | None = Field(
        None, description="Panel: None = genes seen in the molecular table; 'all'; or a list.")

    @property
    def columns(self) -> list[str]:
        """The design columns in order: counts, karyotype, ``MUT_<gene>``, extras, VAFs, scores."""
        cols = list(self.counts)
        if self.karyotype:
            cols += list(KARYOTYPE_COLUMNS)
        cols += [f"MUT_{g}" for g in self.genes]
        if self.mutation_extras:
            cols += list(_MUTATION_EXTRAS)
        if self.vaf_columns:
            cols += [f"VAF_{g}" for g in self.genes if g != "TP53"] + ["TP53_MAXVAF"]
        cols += list(self.scores)
        return cols


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

def _validate(kind: str, df: pd.DataFrame | None, source: str) -> pd.DataFrame | None:
    """Run the §9 validator of :mod:`hemotwin.prognosis.tables` (idempotent on validated tables)."""
    if df is None:
        return None
    from hemotwin.prognosis import tables

    fn = {"clinical": tables.validate_clinical, "molecular": tables.validate_molecular,
          "target": tables.validate_target}[kind]
    if kind == "molecular" and df.index.name == "LINE":
        df = df.reset_index(drop=True)  # already validated: lines are not needed again
    out = fn(df, source=source)
    if kind != "molecular" and "warnings" not in out.attrs:
        out.attrs["warnings"] = []
    return out


def align_cohort(clinical: pd.DataFrame, molecular: pd.DataFrame | None = None,
                 target: pd.DataFrame | None = None, *, names: Sequence[str] = ("clinical", "molecular", "target"),
                 ) -> tuple[pd.DataFrame, pd.DataFrame | None, pd.DataFrame | None, list[str]]:
    """Validate the tables and restrict them to the patients that can be used.

    Returns ``(clinical, molecular, target, notes)``; when ``target`` is given, clinical and target
    are restricted to their common IDs *in clinical order*. A target ID absent from clinical is an
    error (a mislabelled or truncated file is likelier than a real patient without data); clinical
    patients without an outcome are dropped with a note; molecular rows of unknown IDs are ignored
    with a note.
    """
    c = _validate("clinical", clinical, names[0])
    m = _validate("molecular", molecular, names[1])
    t = _validate("target", target, names[2])
    notes = [str(w) for df in (c, m, t) if df is not None for w in df.attrs.get("warnings", [])]
    if m is not None and len(m):
        extra = sorted(set(m["ID"].astype(str)) - set(c.index.astype(str)))
        if extra:
            notes.append(f"{names[1]}: {len(extra)} ID(s) not in {names[0]} ignored: {', '.join(extra[:5])}")
            m = m[m["ID"].astype(str).isin(c.index.astype(str))]
    if t is not None:
        missing = [i for i in t.index.astype(str) if i not in set(c.index.astype(str))]
        if missing:
            raise InputError(f"{names[2]}, column ID", missing[:5],
                             f"IDs that are in the clinical table {names[0]} ({len(missing)} are not)")
        keep = c.index.isin(t.index)
        if not keep.all():
            notes.append(f"{names[0]}: {int((~keep).sum())} patient(s) without an outcome in {names[2]} left out")
        c = c.loc[keep]
        t = t.loc[c.index]
    return c, m, t, notes


# --------------------------------------------------------------------------------------------------
# Karyotype
# --------------------------------------------------------------------------------------------------

@lru_cache(maxsize=65536)
def _karyo_row(text: str) -> tuple[float, ...]:
    """Design values of one karyotype string (cached: cohorts repeat '46,XY[20]' thousands of times)."""
    feats = _parse_karyotype(text)
    vals = []
    for fld in _KARYO_FIELDS.values():
        v = getattr(feats, fld)
        vals.append(math.nan if v is None else float(v))
    grp = feats.ipssr_group
    vals.append(math.nan if grp is None else float(_IPSSR_CODE[grp]))
    return tuple(vals)


def _parse_karyotype(text: str):
    from hemotwin.prognosis.karyotype_features import karyotype_features

    try:
        return karyotype_features(text)
    except Exception:  # the parser must never crash a cohort; an unreadable string is "unknown"
        from hemotwin.prognosis.cytogenetics import KaryotypeFeatures

        return KaryotypeFeatures(text=text, evaluable=False, warnings=("karyotype parser failed",))


def karyotype_matrix(texts: Iterable[Any], index: pd.Index | None = None) -> pd.DataFrame:
    """Karyotype design columns (:data:`KARYOTYPE_COLUMNS`) of a sequence of ISCN strings."""
    texts = ["" if (t is None or (isinstance(t, float) and math.isnan(t))) else str(t) for t in texts]
    rows = [_karyo_row(t) for t in texts]
    return pd.DataFrame(rows, columns=list(KARYOTYPE_COLUMNS), index=index, dtype=float)


# --------------------------------------------------------------------------------------------------
# Design
# --------------------------------------------------------------------------------------------------

def _mutations(molecular: pd.DataFrame | None, ids: pd.Index, spec_panel) -> pd.DataFrame:
    from hemotwin.prognosis.mutations import mutation_matrix

    panel = list(spec_panel) if isinstance(spec_panel, tuple) else spec_panel
    return mutation_matrix(molecular, list(ids), sequenced_genes=panel)


def fit_design(clinical: pd.DataFrame, molecular: pd.DataFrame | None = None, *, min_gene_count: int = 5,
               vaf_columns: bool = False, karyotype: bool = True, mutation_extras: bool = True,
               score_features: Sequence[str] = (),
               sequenced_genes: Sequence[str] | str | None = None) -> DesignSpec:
    """Choose the design columns on a training cohort.

    Parameters
    ----------
    clinical, molecular
        Training tables (validated or raw §9 frames).
    min_gene_count
        A gene becomes a column when at least this many training patients carry it (rarer genes only
        add noise and unstable Cox coefficients).
    vaf_columns
        Add ``VAF_<GENE>`` columns.
    karyotype
        Add karyotype features.
    score_features
        Published scores to use as *features* (columns of :func:`published_scores`).
    sequenced_genes
        Sequencing panel (see :func:`hemotwin.prognosis.mutations.mutation_matrix`).
    """
    if min_gene_count < 1:
        raise InputError("min_gene_count", min_gene_count, "an integer >= 1")
    c = _validate("clinical", clinical, "clinical")
    m = _validate("molecular", molecular, "molecular")
    counts = tuple(col for col in COUNT_COLUMNS if col in c.columns)
    genes: tuple[str, ...] = ()
    if m is not None and len(m):
        per_gene = m[m["ID"].isin(c.index)].groupby("GENE")["ID"].nunique()
        genes = tuple(sorted(per_gene.index[per_gene >= min_gene_count]))
        # FLT3 and KMT2A enter through their clinically meaningful forms (ITD/TKD, PTD) among the
        # extras; a second, nearly identical gene column would only split their coefficient.
        if mutation_extras:
            genes = tuple(g for g in genes if g not in ("FLT3", "KMT2A"))
    bad = [s for s in score_features if s not in ("IPSSM_SCORE", "IPSSR_SCORE", "IPSSM_BEST", "IPSSM_WORST",
                                                  "ELN2022", "ELN2024", "IPSSR", "IPSSM")]
    if bad:
        raise InputError("score_features", bad, "columns of score_cohort (IPSSM_SCORE, IPSSR_SCORE, ELN2022 ...)")
    panel = tuple(sequenced_genes) if isinstance(sequenced_genes, list | tuple) else sequenced_genes
    return DesignSpec(counts=counts, karyotype=karyotype, genes=genes, vaf_columns=vaf_columns,
                      mutation_extras=mutation_extras,
                      scores=tuple(score_features), sequenced_genes=panel)


def build_design(spec: DesignSpec, clinical: pd.DataFrame, molecular: pd.DataFrame | None = None, *,
                 scores: pd.DataFrame | None = None) -> pd.DataFrame:
    """The design matrix of ``spec`` for a cohort: index ``ID`` in clinical order, float columns, NaN = unknown.

    ``scores`` (from :func:`published_scores`) is needed only when ``spec.scores`` is not empty; it is
    computed here when not given.
    """
    c = _validate("clinical", clinical, "clinical")
    m = _validate("molecular", molecular, "molecular")
    ids = c.index.astype(str)
    X = pd.DataFrame(index=pd.Index(ids, name="ID"))
    for col in spec.counts:
        X[col] = pd.to_numeric(c[col], errors="coerce").to_numpy(float) if col in c.columns else np.nan
    kary = karyotype_matrix(c["CYTOGENETICS"].tolist(), index=X.index)
    if spec.karyotype:
        X = X.join(kary)
    need_mut = bool(spec.genes) or spec.mutation_extras
    if need_mut:
        mut = _mutations(m, X.index, spec.sequenced_genes).reindex(X.index)
        for g in spec.genes:
            X[f"MUT_{g}"] = mut[f"MUT_{g}"] if f"MUT_{g}" in mut.columns else _unknown_or_zero(m, g, len(X))
        if spec.vaf_columns:
            vmax = _max_vaf_by_gene(m, X.index)
            for g in spec.genes:
                col = vmax[g] if g in vmax.columns else pd.Series(0.0, index=X.index)
                # 0 for wild type, NaN where the gene (or its VAF) is unknown
                X[f"VAF_{g}"] = np.where(X[f"MUT_{g}"] == 1, col, np.where(X[f"MUT_{g}"] == 0, 0.0, np.nan))
        X["TP53_MAXVAF"] = np.where(mut["TP53_N"] == 0, 0.0, mut["TP53_MAXVAF"])
        if spec.mutation_extras:
            from hemotwin.prognosis.mutations import tp53_multihit

            X["TP53_MULTIHIT"] = tp53_multihit(mut["TP53_N"].to_numpy(float), mut["TP53_MAXVAF"].to_numpy(float),
                                               kary["ABN17P"].to_numpy(float))
            for col in ("FLT3_ITD", "FLT3_TKD", "KMT2A_PTD"):
                X[col] = mut[col]
            n_mut, max_vaf = _mutation_burden(m, X.index)
            X["N_MUTATIONS"], X["MAX_VAF"] = n_mut, max_vaf
    if spec.scores:
        sc = scores if scores is not None else published_scores(c, m, sequenced_genes=spec.sequenced_genes)
        sc = sc.reindex(X.index)
        from hemotwin.prognosis.survival import PublishedScore

        for col in spec.scores:
            X[col] = PublishedScore(col).fit(sc).predict(sc) if sc[col].notna().any() else np.nan
    return X[spec.columns].astype(float)


def _unknown_or_zero(m: pd.DataFrame | None, gene: str, n: int) -> np.ndarray:
    # A training gene never seen in this cohort: wild type if a molecular table was given, else unknown.
    return np.full(n, 0.0 if m is not None else np.nan)


def _max_vaf_by_gene(m: pd.DataFrame | None, ids: pd.Index) -> pd.DataFrame:
    if m is None or len(m) == 0 or "VAF" not in m.columns:
        return pd.DataFrame(index=ids)
    return m.groupby(["ID", "GENE"])["VAF"].max().unstack("GENE").reindex(ids)


def _mutation_burden(m: pd.DataFrame | None, ids: pd.Index) -> tuple[np.ndarray, np.ndarray]:
    if m is None:
        return np.full(len(ids), np.nan), np.full(len(ids), np.nan)
    if len(m) == 0:
        return np.zeros(len(ids)), np.zeros(len(ids))
    n_mut = m.groupby("ID").size().reindex(ids).fillna(0).to_numpy(float)
    if "VAF" in m.columns:
        max_vaf = m.groupby("ID")["VAF"].max().reindex(ids).to_numpy(float)
        max_vaf = np.where(n_mut == 0, 0.0, max_vaf)
    else:
        max_vaf = np.full(len(ids), np.nan)
    return n_mut, max_vaf


# --------------------------------------------------------------------------------------------------
# Published scores
# --------------------------------------------------------------------------------------------------

def published_scores(clinical: pd.DataFrame, molecular: pd.DataFrame | None = None, *,
                     sequenced_genes: Sequence[str] | str | None = None) -> pd.DataFrame:
    """IPSS-M, IPSS-R and ELN 2022 of every patient via :func:`hemotwin.prognosis.scoring.score_cohort`.

    Returns a frame indexed by ``ID`` in clinical order (the columns of ``score_cohort``).
    """
    from hemotwin.prognosis.scoring import score_cohort

    c = _validate("clinical", clinical, "clinical")
    m = _validate("molecular", molecular, "molecular")
    panel = list(sequenced_genes) if isinstance(sequenced_genes, tuple) else sequenced_genes
    out = score_cohort(c, m, sequenced_genes=panel)
    if "ID" in out.columns:
        out = out.set_index(out["ID"].astype(str))
    out.index = out.index.astype(str)
    out.index.name = "ID"
    return out.reindex(c.index.astype(str))
