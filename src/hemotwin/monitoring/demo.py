"""The monitoring demo: every example patient in full, plus a cohort summary that includes a bad file."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from hemotwin.monitoring.cohort import monitor_patient, run_cohort


def examples_dir() -> Path:
    """Folder of the shipped illustrative patients (package data)."""
    return Path(str(resources.files("hemotwin.monitoring") / "examples"))


def example_paths() -> list[Path]:
    """The example patient files, sorted by name."""
    return sorted(p for p in examples_dir().iterdir() if p.suffix in (".json", ".csv"))


#: A deliberately bad patient (timepoint before diagnosis, MRD value without a unit) for the cohort demo.
BAD_PATIENT = {
    "patient": "EX99-bad", "diagnosis": {"date": "2024-02-01", "disease": "illustrative bad input"},
    "timepoints": [{"date": "2024-01-15", "sample": "blood", "anc_per_ul": 1200,
                    "mrd": [{"method": "qpcr", "marker": "NPM1", "value": 0.5}]}],
}


def run_demo(out_dir: Path) -> dict[str, str]:
    """Write each example patient's report under ``out_dir/<patient>/`` and a cohort summary.

    The cohort input (``out_dir/cohort_input``) is the examples plus :data:`BAD_PATIENT`, to show that a
    cohort run continues past a bad patient and lists it. Existing files in ``out_dir`` are replaced.

    Returns
    -------
    dict
        Output name -> path (``<patient>_html``, ``<patient>_figure``, ``<patient>_json``, ``cohort_csv``,
        ``cohort_html``, ``cohort_json``).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs: dict[str, str] = {}
    cohort_in = out_dir / "cohort_input"
    if cohort_in.exists():
        shutil.rmtree(cohort_in)
    cohort_in.mkdir()
    for path in example_paths():
        shutil.copy(path, cohort_in / path.name)
        tl, _, outs, _ = monitor_patient(path, out_dir / path.stem, overwrite=True, command="hemotwin demo")
        for k, v in outs.items():
            outputs[f"{tl.patient}_{k}"] = v
    (cohort_in / "EX99-bad.json").write_text(json.dumps(BAD_PATIENT, indent=2) + "\n")
    summary = run_cohort(cohort_in, out_dir / "cohort", overwrite=True)
    outputs.update(cohort_csv=summary["csv"], cohort_html=summary["html"], cohort_json=summary["json"])
    return outputs
