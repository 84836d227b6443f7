"""Readers and validators of the cohort tables of docs/clinical_rules.md §9 (clinical, molecular, target).

Every reader returns a clean :class:`pandas.DataFrame` and keeps the non-fatal issues it met as a
list of :class:`TableWarning` in ``df.attrs["warnings"]``; fatal problems raise
:class:`hemotwin.errors.InputError` naming the file, the line (1 = header), the ID, the column and
the value, and what was expected.

Schemas (docs/clinical_rules.md §9)
---------------------------
- clinical: ``ID`` plus ``BM_BLAST`` (%), ``HB`` (g/dL), ``PLT`` (x10^9/L), ``ANC`` (x10^9/L),
  ``CYTOGENETICS`` (ISCN text) required; ``CENTER``, ``WBC`` and ``MONOCYTES`` (x10^9/L), ``AGE``
  (years), ``SEX``, ``DISEASE`` (AML/MDS) optional; any column prefixed ``X_`` is kept untouched.
  Blank cells are missing values (never zero). Index: ``ID``.
- molecular: ``ID``, ``GENE`` required; ``CHR``, ``START``, ``END``, ``REF``, ``ALT``,
  ``PROTEIN_CHANGE``, ``EFFECT``, ``VAF`` (0-1), ``DEPTH`` optional, ``X_*`` kept. One row per
  mutation; the index is the file line of each row.
- target: ``ID``, ``OS_YEARS`` (float >= 0), ``OS_STATUS`` (int, 1 = death, 0 = censored). Rows
  missing either value are dropped with a warning. Index: ``ID``.

Unit guards (each a clear error naming the unit expected): ``PLT`` > 2000 looks like /µL, ``WBC`` >
1000 and ``ANC``/``MONOCYTES`` > 200 look like /µL, ``HB`` > 25 looks like g/L; ``BM_BLAST`` must
lie in 0-100; a sample whose VAFs are all >= 1 (and <= 100) is read as percent with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict

from hemotwin.errors import InputError
from hemotwin.prognosis.mutations import KNOWN_EFFECTS, KNOWN_GENES, normalize_gene

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "CLINICAL_COLUMNS", "CLINICAL_OPTIONAL", "CLINICAL_REQUIRED", "MOLECULAR_COLUMNS", "MOLECULAR_REQUIRED",
    "TARGET_COLUMNS", "CohortTables", "TableWarning", "check_ids", "read_clinical", "read_cohort", "read_molecular",
    "read_target", "validate_clinical", "validate_molecular", "validate_target", "warnings_of",
]

CLINICAL_REQUIRED: tuple[str, ...] = ("ID", "BM_BLAST", "HB", "PLT", "ANC", "CYTOGENETICS")
CLINICAL_OPTIONAL: tuple[str, ...] = ("CENTER", "WBC", "MONOCYTES", "AGE", "SEX", "DISEASE")
CLINICAL_COLUMNS: tuple[str, ...] = CLINICAL_REQUIRED + CLINICAL_OPTIONAL
MOLECULAR_REQUIRED: tuple[str, ...] = ("ID", "GENE")
MOLECULAR_COLUMNS: tuple[str, ...] = ("ID", "CHR", "START", "END", "REF", "ALT", "GENE", "PROTEIN_CHANGE", "EFFECT",
                                      "VAF", "DEPTH")
TARGET_COLUMNS: tuple[str, ...] = ("ID", "OS_YEARS", "OS_STATUS")

#: Numeric clinical columns: (lowest allowed, highest plausible, what a larger value looks like).
#: The ceilings are far above any real value in the unit expected (e.g. record leukocytosis is a few
#: hundred x10^9/L) and far below the same quantity in the usual wrong unit (/µL is x10^-3 of x10^9/L).
_CLINICAL_NUMERIC: dict[str, tuple[float, float, str]] = {
    "BM_BLAST": (0.0, 100.0, "a bone-marrow blast percentage between 0 and 100"),
    "HB": (0.0, 25.0, "haemoglobin in g/dL (a value above 25 looks like g/L: divide by 10)"),
    "PLT": (0.0, 2000.0, "platelets in x10^9/L (a value above 2000 looks like /µL: divide by 1000)"),
    "WBC": (0.0, 1000.0, "white cells in x10^9/L (a value above 1000 looks like /µL: divide by 1000)"),
    "ANC": (0.0, 200.0, "neutrophils in x10^9/L (a value above 200 looks like /µL: divide by 1000)"),
    "MONOCYTES": (0.0, 200.0, "monocytes in x10^9/L (a value above 200 looks like /µL: divide by 1000)"),
    "AGE": (0.0, 120.0, "an age in years between 0 and 120"),
}
_MISSING_TOKENS = frozenset({"", "NA", "N/A", "NAN", "NULL", "NONE", ".", "-"})


class TableWarning(BaseModel):
    """A non-fatal issue found in a table (the row was kept, or corrected as stated)."""

    model_config = ConfigDict(frozen=True)

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class CohortTables(BaseModel):
    """The three tables read together, with every warning (see :func:`read_cohort`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    clinical: object
    molecular: object | None = None
    target: object | None = None
    warnings: list[TableWarning] = []


def warnings_of(df: pd.DataFrame | None) -> list[TableWarning]:
    """The :class:`TableWarning` list a reader attached to ``df`` (empty if none)."""
    if df is None:
        return []
    return list(df.attrs.get("warnings", []))


# --------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------


#: Separator -> its name in messages.
_SEPARATORS: dict[str, str] = {",": "comma", "\t": "tab", ";": "semicolon"}
#: (separator the file name promises, separator the header shows) -> how to fix the file.
_SEPARATOR_FIX: dict[tuple[str, str], str] = {
    (",", ";"): "use commas (or a .tsv with tabs)",
    (",", "\t"): "name it .tsv (or use commas)",
    ("\t", ";"): "use tabs (or a .csv with commas)",
    ("\t", ","): "name it .csv (or use tabs)",
}


def _read_text(path: Path) -> str:
    """The file as text; a non-UTF-8 byte is an error naming the line it is on."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise InputError(f"{path.name}, line {line}", f"byte 0x{data[exc.start]:02x}",
                         "UTF-8 text (save the table as UTF-8 CSV; this looks like another encoding, e.g. "
                         "Latin-1 or Windows-1252)") from None


def _check_separator(path: Path, text: str, sep: str) -> None:
    """Refuse a header that is plainly split by another separator than the file name promises."""
    header = next((line for line in text.splitlines() if line.strip()), "")
    if sep in header:
        return
    for (expected, other), fix in _SEPARATOR_FIX.items():
        if expected == sep and header.count(other) >= 2:
            raise InputError(f"{path.name}, line 1", header[:120],
                             f"{_SEPARATORS[sep]}-separated columns: the file looks {_SEPARATORS[other]}-separated; "
                             f"{fix}")


def _raise_open_quote(path: Path, text: str) -> None:
    """Name the line of a quoted field that is never closed (the usual cause of a parser error)."""
    opened = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line.count('"') % 2:
            opened = 0 if opened else line_no
    if opened:
        shown = text.splitlines()[opened - 1]
        raise InputError(f"{path.name}, line {opened}", shown[:120],
                         'a closing double quote (") for the quoted field opened on this line')


def _read_raw(path: str | Path) -> pd.DataFrame:
    """Every cell as text; blank lines kept (then dropped) so that row i is file line i + 2.

    Problems of the file itself are said in our words, naming file and line: not UTF-8, the wrong
    separator (a semicolon-separated ``.csv``), a quote never closed, a row with more fields than the
    header.
    """
    import io

    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise InputError(str(path), str(path), "an existing CSV/TSV file")
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab", ".txt") else ","
    text = _read_text(path)
    if not text.strip():
        raise InputError(str(path), "(empty file)", "a header line and at least one data row")
    _check_separator(path, text, sep)
    try:
        with warnings.catch_warnings():
            # A row with more fields than the header would silently shift or lose cells: refuse it.
            warnings.simplefilter("error", pd.errors.ParserWarning)
            df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, skip_blank_lines=False,
                             index_col=False)
    except (pd.errors.ParserWarning, pd.errors.ParserError):
        # pandas' own wording ("Error tokenizing data. C error ...") is not shown: find the line ourselves.
        _raise_open_quote(path, text)
        _raise_field_count(path, sep)
        raise InputError(path.name, "(unreadable table)",
                         f"one record per line, fields separated by {_SEPARATORS[sep]}s") from None
    except pd.errors.EmptyDataError:
        raise InputError(str(path), "(empty file)", "a header line and at least one data row") from None
    df.index = np.arange(2, len(df) + 2)
    blank = df.apply(lambda c: c.str.strip() == "").all(axis=1) if len(df.columns) else df.index == df.index
    return df.loc[~np.asarray(blank)]


def _with_lines(df: pd.DataFrame) -> pd.DataFrame:
    """A frame with ``ID`` as its index gets it back as a column; a default 0..n-1 index becomes file lines."""
    import pandas as pd

    if df.index.name is not None and str(df.index.name).strip().upper() == "ID" and \
            "ID" not in [str(c).strip().upper() for c in df.columns]:
        df = df.reset_index()
    if isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1:
        df = df.set_axis(np.arange(2, len(df) + 2), axis=0)
    return df


def _raise_field_count(path: Path, sep: str) -> None:
    """Name the first line whose number of fields differs from the header's."""
    import csv

    with open(path, newline="", encoding="utf-8-sig") as fh:
        rows = csv.reader(fh, delimiter=sep)
        header = next(rows)
        for line, row in enumerate(rows, start=2):
            if row and len(row) != len(header):
                raise InputError(f"{path.name}, line {line}", sep.join(row)[:120],
                                 f"{len(header)} fields like the header (got {len(row)}; quote text holding "
                                 f"'{sep}', e.g. \"46,XX[20]\")")


def _normalise_columns(df: pd.DataFrame, *, source: str, known: Sequence[str], required: Sequence[str],
                       allow: Sequence[str] = ()) -> pd.DataFrame:
    """Upper-case the known columns, refuse unknown ones (``X_*`` and ``allow`` pass), check required ones."""
    names = []
    for c in df.columns:
        s = str(c).strip()
        names.append(s if s[:2].upper() == "X_" else s.upper())
    unknown = [n for n in names if n not in known and n not in allow and n[:2].upper() != "X_"]
    if unknown:
        raise InputError(f"{source}, header", unknown,
                         f"only the known columns {', '.join(known)} (and extra columns prefixed X_)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{source}, header", dup, "each column once")
    missing = [c for c in required if c not in names]
    if missing:
        raise InputError(f"{source}, header", missing, f"the required columns {', '.join(required)}")
    out = df.copy()
    out.columns = names
    return out


def _as_text(col: pd.Series) -> pd.Series:
    """Trimmed text; missing tokens -> ''."""
    s = col.astype(str).str.strip()
    return s.where(~s.str.upper().isin(_MISSING_TOKENS), "")


def _as_number(df: pd.DataFrame, col: str, *, source: str, ids: pd.Series | None) -> pd.Series:
    """Parse a numeric column; a non-blank non-number is an error naming line, ID and column."""
    import pandas as pd

    raw = df[col]
    if pd.api.types.is_numeric_dtype(raw):
        return raw.astype(float)
    text = _as_text(raw)
    num = pd.to_numeric(text.str.replace(",", ".", regex=False).where(text != "", None), errors="coerce")
    bad = num.isna() & (text != "")
    if bad.any():
        line = bad.idxmax()
        raise InputError(_where(source, line, ids, col), text.loc[line], "a number (blank if unknown)")
    return num.astype(float)


def _where(source: str, line, ids: pd.Series | None, col: str | None = None) -> str:
    """``file, line N (ID x), column C`` for error messages."""
    s = f"{source}, line {line}"
    if ids is not None and line in ids.index:
        s += f" (ID {ids.loc[line]})"
    if col:
        s += f", column {col}"
    return s


def _check_ids(df: pd.DataFrame, *, source: str, unique: bool) -> pd.Series:
    ids = _as_text(df["ID"])
    blank = ids == ""
    if blank.any():
        raise InputError(_where(source, blank.idxmax(), None, "ID"), "", "a non-blank patient ID on every row")
    if unique:
        dup = ids.duplicated(keep=False)
        if dup.any():
            first = ids[dup].iloc[0]
            lines = [int(x) for x in ids.index[ids == first]]
            raise InputError(f"{source}, lines {lines}, column ID", first, "each patient ID once")
    return ids


def _check_range(values: pd.Series, col: str, *, lo: float, hi: float, expected: str, source: str,
                 ids: pd.Series | None) -> None:
    bad = (values < lo) | (values > hi)
    if bad.any():
        line = bad.idxmax()
        raise InputError(_where(source, line, ids, col), float(values.loc[line]), expected)


def validate_clinical(df: pd.DataFrame, *, source: str = "clinical") -> pd.DataFrame:
    """Validate and clean a clinical table (docs/clinical_rules.md §9).

    Parameters
    ----------
    df
        The table, with ``ID`` as a column or as the index; cells may be text or numbers. Its index,
        when ``ID`` is a column, is taken as the file line of each row (for messages).
    source
        Name of the file or table, used in messages.

    Returns
    -------
    pandas.DataFrame
        Index ``ID`` (text); numeric columns as float (``NaN`` = missing); ``CYTOGENETICS`` text
        (``""`` = missing); the list of :class:`TableWarning` in ``attrs["warnings"]``.

    Raises
    ------
    InputError
        Unknown or missing columns, blank or duplicate IDs, non-numbers, impossible values or values
        in the wrong unit; the message names line, ID, column, value and the unit expected.
    """
    df = _with_lines(df)
    df = _normalise_columns(df, source=source, known=CLINICAL_COLUMNS, required=CLINICAL_REQUIRED)
    if len(df) == 0:
        raise InputError(source, "(no data rows)", "at least one patient row")
    warnings: list[TableWarning] = []
    ids = _check_ids(df, source=source, unique=True)
    out = df.copy()
    out["ID"] = ids
    for col, (lo, hi, expected) in _CLINICAL_NUMERIC.items():
        if col not in out.columns:
            continue
        vals = _as_number(out, col, source=source, ids=ids)
        if (vals < 0).any():
            line = (vals < 0).idxmax()
            raise InputError(_where(source, line, ids, col), float(vals.loc[line]), "a value >= 0 (counts and "
                             "percentages cannot be negative)")
        _check_range(vals, col, lo=lo, hi=hi, expected=expected, source=source, ids=ids)
        out[col] = vals
    blasts = out["BM_BLAST"].dropna()
    if len(blasts) >= 5 and float(blasts.max()) <= 1.0 and float(blasts.max()) > 0:
        # A fraction instead of a percentage cannot be told apart row by row; warn for the whole column.
        warnings.append(TableWarning(where=f"{source}, column BM_BLAST",
                                     message="every blast value is <= 1: are they fractions instead of %? "
                                             "(read as %)"))
    for col in ("CYTOGENETICS", "CENTER", "SEX", "DISEASE"):
        if col in out.columns:
            out[col] = _as_text(out[col])
    if "DISEASE" in out.columns:
        d = out["DISEASE"].str.upper()
        bad = ~d.isin(["AML", "MDS", ""])
        if bad.any():
            line = bad.idxmax()
            raise InputError(_where(source, line, ids, "DISEASE"), out["DISEASE"].loc[line], "AML, MDS or blank")
        out["DISEASE"] = d
    n_cyto = int((out["CYTOGENETICS"] == "").sum())
    if n_cyto:
        warnings.append(TableWarning(where=f"{source}, column CYTOGENETICS",
                                     message=f"{n_cyto} patient(s) without a karyotype (cytogenetic risk unknown)"))
    out = out.set_index("ID")
    out.attrs["warnings"] = warnings
    return out


def validate_molecular(df: pd.DataFrame, *, source: str = "molecular") -> pd.DataFrame:
    """Validate and clean a molecular (MAF-like) table (docs/clinical_rules.md §9).

    ``GENE`` is upper-cased with aliases resolved (``MLL`` -> ``KMT2A``); genes outside
    :data:`~hemotwin.prognosis.mutations.KNOWN_GENES` and unknown ``EFFECT`` values give one warning
    each (with counts). ``VAF`` must be a fraction in 0-1; a sample whose VAFs are all >= 1 and <= 100
    is read as percent (divided by 100, with a warning); a VAF below 0, above 100, or above 1 in a
    sample with other VAFs below 1 (mixed units) is an error. An empty table (header only) is valid:
    no mutation was found in anyone. The index is the file line of each row.
    """
    import pandas as pd

    df = _normalise_columns(_with_lines(df), source=source, known=MOLECULAR_COLUMNS, required=MOLECULAR_REQUIRED)
    warnings: list[TableWarning] = []
    out = df.copy()
    if len(out) == 0:
        out.attrs["warnings"] = warnings
        return out
    ids = _check_ids(out, source=source, unique=False)
    out["ID"] = ids
    genes = _as_text(out["GENE"])
    if (genes == "").any():
        line = (genes == "").idxmax()
        raise InputError(_where(source, line, ids, "GENE"), "", "a gene symbol on every row")
    out["GENE"] = genes.map(normalize_gene)
    unknown = out.loc[~out["GENE"].isin(KNOWN_GENES), "GENE"].value_counts()
    if len(unknown):
        listed = ", ".join(f"{g} ({n})" for g, n in unknown.head(20).items())
        warnings.append(TableWarning(where=f"{source}, column GENE",
                                     message=f"gene(s) not in the known myeloid panel list, kept as given: {listed}"))
    for col in ("PROTEIN_CHANGE", "EFFECT", "CHR", "REF", "ALT"):
        if col in out.columns:
            out[col] = _as_text(out[col])
    if "EFFECT" in out.columns:
        eff = out["EFFECT"].str.lower()
        odd = eff[(eff != "") & ~eff.isin(KNOWN_EFFECTS)].value_counts()
        if len(odd):
            warnings.append(TableWarning(where=f"{source}, column EFFECT",
                                         message="unrecognised EFFECT value(s), kept as given: "
                                                 + ", ".join(f"{e} ({n})" for e, n in odd.head(20).items())))
    for col in ("START", "END", "DEPTH"):
        if col in out.columns:
            vals = _as_number(out, col, source=source, ids=ids)
            if (vals < 0).any():
                line = (vals < 0).idxmax()
                raise InputError(_where(source, line, ids, col), float(vals.loc[line]), "a value >= 0")
            out[col] = vals
    if "VAF" in out.columns:
        vaf = _as_number(out, "VAF", source=source, ids=ids)
        _check_range(vaf, "VAF", lo=0.0, hi=100.0, expected="a variant allele fraction between 0 and 1 "
                     "(or a percentage 0-100 for every VAF of the sample)", source=source, ids=ids)
        big = vaf > 1.0
        if big.any():
            g = pd.DataFrame({"ID": ids, "vaf": vaf, "big": big})
            per = g.groupby("ID", sort=False).agg(any_big=("big", "any"), vmin=("vaf", "min"))
            mixed = per.index[per["any_big"] & (per["vmin"] < 1.0)]
            if len(mixed):
                line = (big & ids.isin(mixed)).idxmax()
                raise InputError(_where(source, line, ids, "VAF"), float(vaf.loc[line]),
                                 "a fraction between 0 and 1 (this sample mixes values above 1 with values "
                                 "below 1: give all its VAFs as fractions, or all as percent)")
            pct = per.index[per["any_big"]]
            conv = ids.isin(pct)
            vaf = vaf.where(~conv, vaf / 100.0)
            shown = ", ".join(map(str, pct[:10])) + (" ..." if len(pct) > 10 else "")
            warnings.append(TableWarning(where=f"{source}, column VAF",
                                         message=f"{len(pct)} sample(s) give every VAF as a percentage; divided "
                                                 f"by 100: {shown}"))
        out["VAF"] = vaf
    out.index.name = "LINE"
    out.attrs["warnings"] = warnings
    return out


def validate_target(df: pd.DataFrame, *, source: str = "target") -> pd.DataFrame:
    """Validate a survival target table: ``OS_YEARS`` float >= 0, ``OS_STATUS`` 0/1 (int).

    Rows with a missing time or status are dropped with a warning that names them; a negative time,
    or a status other than 0/1, is an error. Index ``ID``.
    """
    df = _with_lines(df)
    df = _normalise_columns(df, source=source, known=TARGET_COLUMNS, required=TARGET_COLUMNS)
    if len(df) == 0:
        raise InputError(source, "(no data rows)", "at least one patient row")
    warnings: list[TableWarning] = []
    ids = _check_ids(df, source=source, unique=True)
    out = df.copy()
    out["ID"] = ids
    t = _as_number(out, "OS_YEARS", source=source, ids=ids)
    s = _as_number(out, "OS_STATUS", source=source, ids=ids)
    if (t < 0).any():
        line = (t < 0).idxmax()
        raise InputError(_where(source, line, ids, "OS_YEARS"), float(t.loc[line]), "a survival time in years >= 0")
    bad = s.notna() & ~s.isin([0.0, 1.0])
    if bad.any():
        line = bad.idxmax()
        raise InputError(_where(source, line, ids, "OS_STATUS"), float(s.loc[line]), "1 (death) or 0 (censored)")
    if t.dropna().gt(100).any():
        line = t.gt(100).idxmax()
        raise InputError(_where(source, line, ids, "OS_YEARS"), float(t.loc[line]),
                         "a time in years (a value above 100 looks like days or months)")
    keep = t.notna() & s.notna()
    if not keep.all():
        dropped = list(ids[~keep])
        shown = ", ".join(map(str, dropped[:10])) + (" ..." if len(dropped) > 10 else "")
        warnings.append(TableWarning(where=f"{source}", message=f"{len(dropped)} row(s) without OS_YEARS or "
                                     f"OS_STATUS dropped: {shown}"))
    out = out.loc[keep, ["ID"]].copy()
    out["OS_YEARS"] = t[keep].astype(float)
    out["OS_STATUS"] = s[keep].astype(int)
    if len(out) == 0:
        raise InputError(source, "(no complete rows)", "at least one row with OS_YEARS and OS_STATUS")
    out = out.set_index("ID")
    out.attrs["warnings"] = warnings
    return out


def read_clinical(path: str | Path) -> pd.DataFrame:
    """Read and validate a clinical CSV/TSV (see :func:`validate_clinical`)."""
    return validate_clinical(_read_raw(path), source=Path(path).name)


def read_molecular(path: str | Path) -> pd.DataFrame:
    """Read and validate a molecular CSV/TSV (see :func:`validate_molecular`)."""
    return validate_molecular(_read_raw(path), source=Path(path).name)


def read_target(path: str | Path) -> pd.DataFrame:
    """Read and validate a target CSV/TSV (see :func:`validate_target`)."""
    return validate_target(_read_raw(path), source=Path(path).name)


def check_ids(clinical: pd.DataFrame, other: pd.DataFrame | None, *, name: str = "molecular") -> list[TableWarning]:
    """Warn about IDs of ``other`` (a column ``ID`` or the index) that are not in ``clinical``."""
    if other is None or len(other) == 0:
        return []
    ids = other["ID"] if "ID" in other.columns else other.index.to_series()
    extra = sorted(set(ids.astype(str)) - set(clinical.index.astype(str)))
    if not extra:
        return []
    shown = ", ".join(extra[:10]) + (" ..." if len(extra) > 10 else "")
    return [TableWarning(where=name, message=f"{len(extra)} ID(s) not in the clinical table (ignored): {shown}")]


def read_cohort(clinical: str | Path, molecular: str | Path | None = None,
                target: str | Path | None = None) -> CohortTables:
    """Read the tables that are given and cross-check their IDs; every warning in ``.warnings``."""
    c = read_clinical(clinical)
    m = read_molecular(molecular) if molecular is not None else None
    t = read_target(target) if target is not None else None
    warns = warnings_of(c) + warnings_of(m) + warnings_of(t)
    warns += check_ids(c, m, name=Path(molecular).name if molecular is not None else "molecular")
    warns += check_ids(c, t, name=Path(target).name if target is not None else "target")
    return CohortTables(clinical=c, molecular=m, target=t, warnings=warns)
