"""Disease monitoring: patient timelines, ELN 2022 response and relapse, MRD kinetics, alerts.

For research use only. The rules are those of docs/clinical_rules.md §5; docs/monitoring.md documents
the input schema (JSON and CSV), every criterion and its source.

>>> from hemotwin.monitoring import load_timeline, assess      # doctest: +SKIP
>>> result = assess(load_timeline("patient.json"))              # doctest: +SKIP
>>> result.current_status, [c.label for c in result.calls]      # doctest: +SKIP

Importing this package is light (pydantic records and the assessment engine); the figure, HTML and
cohort writers live in :mod:`~hemotwin.monitoring.report` and :mod:`~hemotwin.monitoring.cohort`.
"""

from hemotwin.monitoring.config import MonitorConfig
from hemotwin.monitoring.criteria import Criterion
from hemotwin.monitoring.records import Call, PatientResult
from hemotwin.monitoring.response import assess, assess_many
from hemotwin.monitoring.timeline import (
    Timeline,
    TimelineWarning,
    Timepoint,
    load_timeline,
    read_timelines_csv,
    timeline_from_dict,
    timeline_from_json,
    write_timeline_csv,
)

__all__ = [
    "Call",
    "Criterion",
    "MonitorConfig",
    "PatientResult",
    "Timeline",
    "TimelineWarning",
    "Timepoint",
    "assess",
    "assess_many",
    "load_timeline",
    "read_timelines_csv",
    "timeline_from_dict",
    "timeline_from_json",
    "write_timeline_csv",
]
