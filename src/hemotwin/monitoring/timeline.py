"""Patient timelines: pydantic records, JSON and CSV readers, validated once at load.

A :class:`Timeline` holds one patient's diagnosis, treatment lines and timepoints in canonical units
(counts x10^9/L, haemoglobin g/dL, percentages %, MRD %), every number an exact
:class:`~decimal.Decimal`. Readers accept the documented aliases (``anc_per_ul``,
``{"value": 1200, "unit": "/µL"}`` ...) and turn every problem into an
:class:`~hemotwin.errors.InputError` that names the patient, the timepoint (date) and the field.
The schema is documented in ``docs/monitoring.md``.
"""

from __future__ import annotations

import csv
import json
import warnings
from datetime import date, timedelta
from decimal import Decimal
from itertools import pairwise
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from hemotwin.errors import InputError
from hemotwin.monitoring.units import (
    MRD_UNITS,
    count_to_1e9_per_l,
    hb_to_g_per_dl,
    mrd_to_pct,
    mrd_unit_factor,
    norm_unit,
    percent,
    to_decimal,
)

SCHEMA = "hemotwin.monitoring.timeline/1"

#: A date more than this many days after the previous date of its timeline (two years, a leap day included) is
#: implausible enough to be reported (a mistyped year, e.g. 2030 for 2024), but long follow-up gaps happen: a
#: warning, not an error. A date after today is an error (see :class:`Timeline`).
MAX_GAP_DAYS = 731


class TimelineWarning(UserWarning):
    """A data-quality problem found at load (timepoints sorted, an implausible date): in ``Timeline.warnings``."""


def _dec_json(d: Decimal) -> float | str:
    # JSON numbers for readability; the (rare) value a float cannot carry exactly stays a string.
    f = float(d)
    return f if Decimal(repr(f)) == d else format(d, "f")


def _dec_in(v: Any) -> Any:
    if isinstance(v, float | int | str) and not isinstance(v, bool):
        return to_decimal(v, "value")
    return v


#: An exact decimal: floats enter through their shortest repr; JSON output is a number.
Dec = Annotated[Decimal, BeforeValidator(_dec_in), PlainSerializer(_dec_json, when_used="json")]
Pct = Annotated[Dec, Field(ge=0, le=100)]
Count = Annotated[Dec, Field(ge=0)]

Method = Literal["flow", "qpcr", "ngs"]
Sample = Literal["blood", "marrow"]
Intensity = Literal["intensive", "less-intensive"]

#: Accepted spellings of MRD methods (anything else is refused: "unknown method").
METHOD_ALIASES: dict[str, str] = {
    "flow": "flow", "mfc": "flow", "flow cytometry": "flow", "mfc-mrd": "flow",
    "qpcr": "qpcr", "rt-qpcr": "qpcr", "rq-pcr": "qpcr", "q-pcr": "qpcr",
    "ngs": "ngs", "ngs-mrd": "ngs",
}
_NOT_DETECTED = {"not detected", "nd", "negative", "undetectable", "<lod", "below lod"}
_COUNTS = ("wbc", "anc", "platelets")
_PCTS = ("blood_blasts", "marrow_blasts", "marrow_cellularity")


def _method(v: Any, where: str) -> str:
    key = str(v).strip().lower() if v is not None else ""
    if key not in METHOD_ALIASES:
        raise InputError(where, v, f"an MRD method: one of {', '.join(sorted(set(METHOD_ALIASES)))}")
    return METHOD_ALIASES[key]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MRDMarker(_Model):
    """A marker followed for MRD, declared at diagnosis (optionally with its pretreatment level)."""

    method: Method
    marker: str = Field(min_length=1)
    baseline_pct: Dec | None = Field(default=None, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        d = dict(data)
        if "method" in d:
            d["method"] = _method(d["method"], "method")
        if "baseline" in d:
            d["baseline_pct"] = mrd_to_pct(d.pop("baseline"), d.pop("unit", None), "baseline")
        return d


class Diagnosis(_Model):
    """Diagnosis: date, disease, pretreatment marrow blasts and the MRD markers followed."""

    date: date
    disease: str = Field(min_length=1)
    baseline_marrow_blasts_pct: Pct | None = None
    mrd_markers: list[MRDMarker] = Field(default_factory=list)


class TreatmentLine(_Model):
    """A line of therapy; ``courses`` are the start dates of its courses (the first is usually ``start``)."""

    start: date
    regimen: str = Field(min_length=1)
    intensity: Intensity
    courses: list[date] = Field(default_factory=list)

    @model_validator(mode="after")
    def _courses(self) -> TreatmentLine:
        if any(c < self.start for c in self.courses):
            raise InputError("courses", [c.isoformat() for c in self.courses], f"course dates on or after {self.start}")
        if self.courses != sorted(self.courses) or len(set(self.courses)) != len(self.courses):
            raise InputError("courses", [c.isoformat() for c in self.courses], "distinct course dates in order")
        return self


class MRDResult(_Model):
    """One MRD measurement: method, marker, tissue, level in % (``None`` when not detected) and LOD in %.

    ``entered_unit`` is the unit the value was reported in (``value_pct`` and ``lod_pct`` are always %): two
    consecutive results in different units that differ about as much as the units do are suspected to be a
    unit slip (:func:`~hemotwin.monitoring.mrd.unit_mix_jump`). ``None``: given in % (or not detected).
    """

    method: Method
    marker: str = Field(min_length=1)
    tissue: Sample | None = None
    value_pct: Dec | None = Field(default=None, ge=0, le=100)
    detected: bool = True
    lod_pct: Dec | None = Field(default=None, gt=0, le=100)
    entered_unit: str | None = None

    @field_validator("entered_unit")
    @classmethod
    def _known_unit(cls, v: str | None) -> str | None:
        if v is not None and norm_unit(v) not in MRD_UNITS:
            raise InputError("entered_unit", v, "one of %, fraction, copies/1e4, copies/1e5, copies/1e6")
        return None if v is None else norm_unit(v)

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        d = dict(data)
        if "method" in d:
            d["method"] = _method(d["method"], "method")
        unit = d.pop("unit", None)
        if "value" in d:
            raw = d.pop("value")
            if raw is None or raw == "":
                raise InputError("value", raw, 'an MRD value with its unit, or "not detected"')
            if isinstance(raw, str) and raw.strip().lower() in _NOT_DETECTED:
                d["value_pct"], d["detected"] = None, False
            else:
                d["value_pct"] = mrd_to_pct(raw, unit, "value")
                d["entered_unit"] = norm_unit(str(unit))
        if "lod" in d:
            raw = d.pop("lod")
            if raw is not None and raw != "":
                d["lod_pct"] = mrd_to_pct(raw, d.pop("lod_unit", unit), "lod")
        return d

    @model_validator(mode="after")
    def _consistent(self) -> MRDResult:
        if self.value_pct is None and self.detected:
            raise InputError("value", None, 'a value with its unit, or "not detected"')
        if self.value_pct is not None and not self.detected:
            raise InputError("detected", False, "detected=true when a value is given (or value 'not detected')")
        return self


def _norm_timepoint(data: dict[str, Any]) -> dict[str, Any]:
    """Accepted aliases -> canonical fields (counts x10^9/L, hb g/dL, percentages %)."""
    d = dict(data)
    for f in _COUNTS:
        canon = f"{f}_1e9_per_l"
        if f"{f}_per_ul" in d:
            d[canon] = count_to_1e9_per_l(d.pop(f"{f}_per_ul"), "/uL", f"{f}_per_ul", field=f)
        elif canon in d and d[canon] is not None and not isinstance(d[canon], Decimal):
            d[canon] = count_to_1e9_per_l(d[canon], "x10^9/L", canon, field=f)
        if f in d:
            d[canon] = _with_unit(d.pop(f), f, lambda v, u, w, f=f: count_to_1e9_per_l(v, u, w, field=f))
    if "hb_g_per_l" in d:
        d["hb_g_per_dl"] = hb_to_g_per_dl(d.pop("hb_g_per_l"), "g/L", "hb_g_per_l")
    elif d.get("hb_g_per_dl") is not None and not isinstance(d["hb_g_per_dl"], Decimal):
        d["hb_g_per_dl"] = hb_to_g_per_dl(d["hb_g_per_dl"], "g/dL", "hb_g_per_dl")
    if "hb" in d:
        d["hb_g_per_dl"] = _with_unit(d.pop("hb"), "hb", hb_to_g_per_dl)
    for f in _PCTS:
        if f"{f}_pct" in d and d[f"{f}_pct"] is not None:
            d[f"{f}_pct"] = percent(d[f"{f}_pct"], f"{f}_pct")
        if f in d:
            d[f"{f}_pct"] = _with_unit(d.pop(f), f, _pct_with_unit)
    return d


def _pct_with_unit(v: Any, unit: str | None, where: str) -> Decimal:
    if unit is None or str(unit).strip() != "%":
        raise InputError(f"{where} unit", unit, "%")
    return percent(v, where)


def _with_unit(v: Any, field: str, conv: Any) -> Decimal | None:
    if v is None:
        return None
    if isinstance(v, dict):
        extra = set(v) - {"value", "unit"}
        if extra or "value" not in v:
            raise InputError(field, v, '{"value": number, "unit": text}')
        return None if v["value"] is None else conv(v["value"], v.get("unit"), field)
    raise InputError(field, v, f'a unit: {{"value": {v}, "unit": ...}} or a field named with its unit (see docs)')


class Timepoint(_Model):
    """One sampling date: blood counts, blasts, marrow evaluability, EMD, transfusions and MRD."""

    date: date
    sample: Sample
    wbc_1e9_per_l: Count | None = None
    anc_1e9_per_l: Count | None = None
    platelets_1e9_per_l: Count | None = None
    hb_g_per_dl: Dec | None = None
    blood_blasts_pct: Pct | None = None
    marrow_blasts_pct: Pct | None = None
    marrow_cellularity_pct: Pct | None = None
    marrow_cells_counted: int | None = Field(default=None, ge=0)
    extramedullary_disease: bool | None = None
    transfusion_dependent: bool | None = None
    mrd: list[MRDResult] = Field(default_factory=list)
    note: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _aliases(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        d = _norm_timepoint(data)
        sample = d.get("sample")
        if isinstance(d.get("mrd"), list):
            d["mrd"] = [dict(m, tissue=m.get("tissue") or sample) if isinstance(m, dict) else m for m in d["mrd"]]
        return d

    @model_validator(mode="after")
    def _consistent(self) -> Timepoint:
        if self.sample == "blood":
            for f in ("marrow_blasts_pct", "marrow_cellularity_pct", "marrow_cells_counted"):
                if getattr(self, f) is not None:
                    raise InputError(f, getattr(self, f), 'no marrow value on a blood sample (sample: "marrow")')
        anc, wbc = self.anc_1e9_per_l, self.wbc_1e9_per_l
        if anc is not None and wbc is not None and anc > wbc:
            raise InputError("anc_1e9_per_l", f"{self.anc_1e9_per_l} > WBC {self.wbc_1e9_per_l}", "ANC <= WBC")
        from hemotwin.monitoring.mrd import canonical_marker  # mrd imports this module

        # One result per series and date: two would make a kinetics fit over zero days (and which one
        # counts would be a guess). Marker spellings are unified first (RUNX1-RUNX1T1 = RUNX1::RUNX1T1).
        seen: set[tuple[str, str, str | None]] = set()
        for m in self.mrd:
            key = (m.method, canonical_marker(m.marker), m.tissue)
            if key in seen:
                raise InputError(f"{self.date} mrd", f"{m.method} {m.marker} ({m.tissue}) twice",
                                 "one result per method, marker and tissue on a date")
            seen.add(key)
        return self


class Timeline(_Model):
    """One patient's course: diagnosis, treatment lines, timepoints (sorted by date at load).

    Dates are checked at load: none may precede the diagnosis or lie after today (errors); a date more than
    :data:`MAX_GAP_DAYS` after the previous date of the timeline is a :class:`TimelineWarning` recorded in
    ``warnings``. "Today" is the validation context's ``today`` (:func:`timeline_from_dict`), else the current date.
    """

    schema_id: Literal["hemotwin.monitoring.timeline/1"] = Field(default=SCHEMA, alias="schema")
    patient: str = Field(min_length=1, max_length=64, description="pseudonym, never a name")
    diagnosis: Diagnosis
    treatment_lines: list[TreatmentLine] = Field(default_factory=list)
    timepoints: list[Timepoint] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list, description="data problems repaired at load")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    @model_validator(mode="after")
    def _order(self, info: ValidationInfo) -> Timeline:
        dx = self.diagnosis.date
        notes = list(self.warnings)
        self._plausible_dates((info.context or {}).get("today") or date.today(), notes)
        seen: dict[date, int] = {}
        for i, tp in enumerate(self.timepoints):
            if tp.date < dx:
                raise InputError(f"{self.patient} {tp.date} date", tp.date.isoformat(),
                                 f"a timepoint on or after the diagnosis date {dx}")
            if tp.date in seen:
                raise InputError(f"{self.patient} {tp.date} date", tp.date.isoformat(),
                                 f"one timepoint per date (timepoints {seen[tp.date]} and {i} share it)")
            seen[tp.date] = i
        for ln in self.treatment_lines:
            if ln.start < dx:
                raise InputError(f"{self.patient} {ln.start} treatment_lines.start", ln.start.isoformat(),
                                 f"a start on or after the diagnosis date {dx}")
        dates = [tp.date for tp in self.timepoints]
        tps, lines = self.timepoints, self.treatment_lines
        if dates != sorted(dates):
            first = next(i for i in range(1, len(dates)) if dates[i] < dates[i - 1])
            msg = (f"{self.patient}: timepoints not in date order ({dates[first]} follows {dates[first - 1]}); "
                   "sorted by date")
            warnings.warn(msg, TimelineWarning, stacklevel=2)
            notes.append(msg)
            tps = sorted(tps, key=lambda t: t.date)
        starts = [ln.start for ln in lines]
        if starts != sorted(starts):
            msg = f"{self.patient}: treatment lines not in date order; sorted by start"
            warnings.warn(msg, TimelineWarning, stacklevel=2)
            notes.append(msg)
            lines = sorted(lines, key=lambda ln: ln.start)
        if len(set(starts)) != len(starts):
            raise InputError(f"{self.patient} treatment_lines.start", [s.isoformat() for s in starts],
                             "one treatment line per start date")
        if tps is not self.timepoints or lines is not self.treatment_lines or notes != self.warnings:
            # A frozen model: build the ordered copy through object.__setattr__ on this fresh instance.
            object.__setattr__(self, "timepoints", tps)
            object.__setattr__(self, "treatment_lines", lines)
            object.__setattr__(self, "warnings", notes)
        return self

    def _plausible_dates(self, today: date, notes: list[str]) -> None:
        """Refuse dates after ``today``; note (warn) a date more than :data:`MAX_GAP_DAYS` after the previous one.

        A sample, a treatment or a diagnosis cannot lie in the future, and an assessment that took such a date
        for real would misplace every later call: an error. A long gap can be real (follow-up after years of
        remission) and is only a likely mistyped year: a warning, recorded once in ``warnings`` (a re-read of
        the canonical record does not add it again). The timeline has no birth date (pseudonymised records);
        nothing may precede the diagnosis date (checked by the caller).
        """
        dated = [(self.diagnosis.date, "diagnosis.date")]
        for ln in self.treatment_lines:
            dated.append((ln.start, "treatment_lines.start"))
            dated += [(c, "treatment_lines.courses") for c in ln.courses]
        dated += [(tp.date, "timepoints.date") for tp in self.timepoints]
        for day, field in dated:
            if day > today:
                raise InputError(f"{self.patient} {field}", day.isoformat(),
                                 f"a date not after today ({today.isoformat()}): a mistyped year?")
        dated.sort(key=lambda x: x[0])  # stable: the diagnosis stays first among equal dates
        for (prev, prev_field), (day, field) in pairwise(dated):
            if day - prev > timedelta(days=MAX_GAP_DAYS):
                msg = (f"{self.patient} {field}: {day.isoformat()} is {(day - prev).days} days after the previous "
                       f"date of the timeline ({prev_field} {prev.isoformat()}), more than 2 years: check the date "
                       "(a mistyped year?)")
                if msg not in notes:
                    warnings.warn(msg, TimelineWarning, stacklevel=3)
                    notes.append(msg)

    def to_json(self) -> str:
        """Canonical JSON (re-read by :func:`timeline_from_json` to an equal record)."""
        return self.model_dump_json(indent=2)


# ---------------------------------------------------------------------------------------------- readers


def _where(data: Any, loc: tuple[Any, ...]) -> str:
    """Name the patient, the timepoint date and the field of a validation error location."""
    patient = data.get("patient", "?") if isinstance(data, dict) else "?"
    parts: list[str] = [str(patient)]
    node: Any = data
    path: list[str] = []
    for key in loc:
        if isinstance(key, int):
            path[-1] = f"{path[-1]}[{key}]" if path else f"[{key}]"
        else:
            path.append(str(key))
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            node = None
        if isinstance(node, dict) and len(path) == 1 and isinstance(key, int) and loc[0] in ("timepoints",
                                                                                              "treatment_lines"):
            parts.append(str(node.get("date", node.get("start", "?"))))
    parts.append(".".join(path) if path else "(record)")
    return " ".join(parts)


def timeline_from_dict(data: Any, *, source: str | None = None, today: date | None = None) -> Timeline:
    """Validate one patient record (JSON-like dict) into a :class:`Timeline`.

    Parameters
    ----------
    data
        The record (JSON-like dict).
    source
        The file it came from, named in errors.
    today
        The date after which no date of the record may lie (default: the current date).

    Returns
    -------
    Timeline
        The validated, sorted record.

    Raises
    ------
    InputError
        With ``where`` = "<patient> <date> <field>" (and the file when ``source`` is given).
    """
    src = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise InputError(f"{src}(record)", type(data).__name__, "a JSON object with patient, diagnosis, timepoints")
    try:
        return Timeline.model_validate(data, context={"today": today} if today is not None else None)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = src + _where(data, tuple(err.get("loc", ())))
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, InputError):
            # Raised inside a record validator: a timeline-level error already names the patient; a
            # field-level one (unit, alias) names only its field, so prefix where the record sits.
            pid = str(data.get("patient", "?"))
            w = src + inner.where if inner.where.startswith(pid + " ") else f"{where}.{inner.where}"
            raise InputError(w, inner.value, inner.expected) from None
        expected = str(err.get("msg", "a valid value")).replace("Input should be ", "").replace("Value error, ", "")
        raise InputError(where, err.get("input"), expected) from None
    except InputError as exc:
        raise InputError(src + exc.where, exc.value, exc.expected) from None


def timeline_from_json(text: str | bytes, *, source: str | None = None, today: date | None = None) -> Timeline:
    """Parse JSON text into a :class:`Timeline` (numbers become exact decimals of their text).

    ``source`` and ``today`` are those of :func:`timeline_from_dict`.
    """
    try:
        # Plain floats: pydantic turns each into the Decimal of its shortest repr (the number as typed).
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(source or "(json)", f"line {exc.lineno} col {exc.colno}", f"valid JSON ({exc.msg})") from None
    return timeline_from_dict(data, source=source, today=today)


#: Columns of the long-format CSV (one measurement per row; see docs/monitoring.md).
CSV_COLUMNS = ("patient", "record", "date", "field", "value", "unit", "method", "marker", "lod", "tissue")


def _csv_records(path: Path) -> dict[str, dict[str, Any]]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in ("patient", "record", "date", "field", "value") if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: header", reader.fieldnames,
                             f"columns {', '.join(CSV_COLUMNS)} (missing {missing})")
        unknown = [c for c in reader.fieldnames or [] if c not in CSV_COLUMNS]
        if unknown:
            raise InputError(f"{path}: header", unknown, f"only the columns {', '.join(CSV_COLUMNS)}")
        patients: dict[str, dict[str, Any]] = {}
        tp_index: dict[tuple[str, str], dict[str, Any]] = {}
        line_index: dict[tuple[str, str], dict[str, Any]] = {}
        for n, row in enumerate(reader, start=2):
            row = {k: (v or "").strip() for k, v in row.items() if k is not None}
            pid, rec, day, field = row["patient"], row["record"].lower(), row["date"], row["field"]
            val, unit = row.get("value", ""), row.get("unit", "") or None
            where = f"{path}:{n} {pid} {day} {field or rec}"
            if not pid:
                raise InputError(where, pid, "a patient pseudonym")
            p = patients.setdefault(pid, {"patient": pid, "diagnosis": {"mrd_markers": []},
                                          "treatment_lines": [], "timepoints": []})
            if rec == "diagnosis":
                dx = p["diagnosis"]
                if dx.get("date") not in (None, day):
                    raise InputError(where, day, f"the same diagnosis date on every diagnosis row ({dx['date']})")
                dx["date"] = day
                if field == "disease":
                    dx["disease"] = val
                elif field in ("marrow_blasts", "baseline_marrow_blasts"):
                    dx["baseline_marrow_blasts_pct"] = _pct_with_unit(val, unit, where)
                elif field == "mrd_marker":
                    m: dict[str, Any] = {"method": row.get("method"), "marker": row.get("marker")}
                    if val:
                        m.update(baseline=val, unit=unit)
                    dx["mrd_markers"].append(m)
                else:
                    raise InputError(where, field, "diagnosis field: disease, marrow_blasts or mrd_marker")
            elif rec == "line":
                ln = line_index.get((pid, day))
                if ln is None:
                    ln = line_index[(pid, day)] = {"start": day, "courses": []}
                    p["treatment_lines"].append(ln)
                if field in ("regimen", "intensity"):
                    ln[field] = val
                elif field == "course":
                    ln["courses"].append(val)
                else:
                    raise InputError(where, field, "line field: regimen, intensity or course")
            elif rec == "timepoint":
                tp = _tp(tp_index, p, pid, day)
                if field in ("sample", "note"):
                    tp[field] = val
                elif field in ("extramedullary_disease", "emd", "transfusion_dependent", "marrow_cells_counted"):
                    tp["extramedullary_disease" if field == "emd" else field] = val if val else None
                elif not val:
                    continue
                elif unit:
                    tp[field] = {"value": val, "unit": unit}
                else:
                    tp[field] = val
            elif rec == "mrd":
                tp = _tp(tp_index, p, pid, day)
                m = {"method": row.get("method"), "marker": row.get("marker"), "value": val, "unit": unit}
                if row.get("lod"):
                    m["lod"] = row["lod"]
                if row.get("tissue"):
                    m["tissue"] = row["tissue"]
                tp.setdefault("mrd", []).append(m)
            else:
                raise InputError(where, rec, "record: diagnosis, line, timepoint or mrd")
    return patients


def _tp(index: dict[tuple[str, str], dict[str, Any]], p: dict[str, Any], pid: str, day: str) -> dict[str, Any]:
    tp = index.get((pid, day))
    if tp is None:
        tp = index[(pid, day)] = {"date": day}
        p["timepoints"].append(tp)
    return tp


def read_timelines_csv(path: str | Path) -> list[Timeline]:
    """Read a long-format CSV holding one or more patients (first error raised, naming row and field)."""
    path = Path(path)
    return [timeline_from_dict(d, source=str(path)) for d in _csv_records(path).values()]


def read_timeline_records(path: str | Path) -> list[tuple[str, Timeline | Exception]]:
    """Read every patient of a file, keeping going past a bad patient: [(patient or file, timeline or error)]."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        try:
            recs = _csv_records(path)
        except (InputError, OSError, UnicodeDecodeError) as exc:
            return [(path.stem, exc)]
        out: list[tuple[str, Timeline | Exception]] = []
        for pid, d in recs.items():
            try:
                out.append((pid, timeline_from_dict(d, source=str(path))))
            except InputError as exc:
                out.append((pid, exc))
        return out
    try:
        return [(path.stem, load_timeline(path))]
    except (InputError, OSError, UnicodeDecodeError) as exc:
        return [(path.stem, exc)]


def load_timeline(path: str | Path) -> Timeline:
    """Read one patient from a ``.json`` file or a single-patient long-format ``.csv`` file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("PATIENT", str(path), "an existing .json or .csv timeline file")
    if path.suffix.lower() == ".csv":
        tls = read_timelines_csv(path)
        if len(tls) != 1:
            raise InputError(str(path), [t.patient for t in tls], "exactly one patient in the file (use --cohort)")
        return tls[0]
    if path.suffix.lower() != ".json":
        raise InputError("PATIENT", str(path), "a .json or .csv timeline file")
    return timeline_from_json(path.read_bytes(), source=str(path))


def write_timeline_csv(timelines: list[Timeline], path: str | Path) -> Path:
    """Write timelines in the long-format CSV (canonical units); :func:`read_timelines_csv` reads it back."""
    path = Path(path)
    rows: list[dict[str, str]] = []
    for tl in timelines:
        def add(record: str, day: date, field: str, value: Any = "", unit: str = "", pid: str = tl.patient,
                **kw: str) -> None:
            v = "" if value is None else (format(value, "f") if isinstance(value, Decimal) else str(value))
            rows.append({"patient": pid, "record": record, "date": day.isoformat(), "field": field,
                         "value": v, "unit": unit, **kw})

        dx = tl.diagnosis
        add("diagnosis", dx.date, "disease", dx.disease)
        if dx.baseline_marrow_blasts_pct is not None:
            add("diagnosis", dx.date, "marrow_blasts", dx.baseline_marrow_blasts_pct, "%")
        for m in dx.mrd_markers:
            add("diagnosis", dx.date, "mrd_marker", m.baseline_pct, "%" if m.baseline_pct is not None else "",
                method=m.method, marker=m.marker)
        for ln in tl.treatment_lines:
            add("line", ln.start, "regimen", ln.regimen)
            add("line", ln.start, "intensity", ln.intensity)
            for c in ln.courses:
                add("line", ln.start, "course", c.isoformat())
        for tp in tl.timepoints:
            add("timepoint", tp.date, "sample", tp.sample)
            for f in _COUNTS:
                v = getattr(tp, f"{f}_1e9_per_l")
                if v is not None:
                    add("timepoint", tp.date, f, v, "x10^9/L")
            if tp.hb_g_per_dl is not None:
                add("timepoint", tp.date, "hb", tp.hb_g_per_dl, "g/dL")
            for f in _PCTS:
                v = getattr(tp, f"{f}_pct")
                if v is not None:
                    add("timepoint", tp.date, f, v, "%")
            for f in ("marrow_cells_counted", "extramedullary_disease", "transfusion_dependent", "note"):
                v = getattr(tp, f)
                if v is not None:
                    add("timepoint", tp.date, f, v)
            for m in tp.mrd:
                # In the unit the value was reported in (exact: a Decimal division by the unit's factor), so that
                # the re-read record keeps it; the LOD is written in the same unit.
                f = mrd_unit_factor(m.entered_unit)
                add("mrd", tp.date, "mrd", m.value_pct / f if m.detected else "not detected",  # type: ignore[operator]
                    m.entered_unit or "%", method=m.method, marker=m.marker,
                    lod="" if m.lod_pct is None else format(m.lod_pct / f, "f"), tissue=m.tissue or "")
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS), restval="")
        w.writeheader()
        w.writerows(rows)
    return path
