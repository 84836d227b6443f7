"""Builders of small timelines for the monitoring tests."""

from __future__ import annotations

import copy
from typing import Any

from hemotwin.monitoring.timeline import Timeline, timeline_from_dict

DX = "2024-01-02"
LINE = {"start": "2024-01-05", "regimen": "7+3", "intensity": "intensive", "courses": ["2024-01-05", "2024-02-05"]}


def marrow(day: str, **kw: Any) -> dict[str, Any]:
    """A marrow timepoint meeting every CR criterion unless overridden (None removes a field)."""
    tp: dict[str, Any] = {"date": day, "sample": "marrow", "anc_1e9_per_l": 2, "platelets_1e9_per_l": 150,
                          "blood_blasts_pct": 0, "marrow_blasts_pct": 2, "marrow_cells_counted": 300,
                          "extramedullary_disease": False}
    tp.update(kw)
    return {k: v for k, v in tp.items() if v is not None}


def blood(day: str, **kw: Any) -> dict[str, Any]:
    tp: dict[str, Any] = {"date": day, "sample": "blood", "anc_1e9_per_l": 2, "platelets_1e9_per_l": 150,
                          "blood_blasts_pct": 0}
    tp.update(kw)
    return {k: v for k, v in tp.items() if v is not None}


def mrd(method: str, marker: str, value: Any, *, unit: str = "%", lod: Any = 0.001, tissue: str | None = None
        ) -> dict[str, Any]:
    m: dict[str, Any] = {"method": method, "marker": marker, "value": value, "unit": unit}
    if lod is not None:
        m["lod"] = lod
    if tissue:
        m["tissue"] = tissue
    return m


def record(*tps: dict[str, Any], line: dict[str, Any] | None = None, baseline: Any = 50,
           lines: list[dict[str, Any]] | None = None, patient: str = "T1") -> dict[str, Any]:
    return {"patient": patient,
            "diagnosis": {"date": DX, "disease": "AML (test)", "baseline_marrow_blasts_pct": baseline},
            "treatment_lines": copy.deepcopy(lines if lines is not None else [line or LINE]),
            "timepoints": copy.deepcopy(list(tps))}


def build(*tps: dict[str, Any], **kw: Any) -> Timeline:
    return timeline_from_dict(record(*tps, **kw))
