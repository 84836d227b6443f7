"""The diagnosis part of ``make demo``: render one virtual leukaemic sample and analyse it."""

from __future__ import annotations

import json
from pathlib import Path

__all__ = ["run_demo"]


def run_demo(out_dir: Path, *, workers: int, case: str = "aml", cells: int = 200, profile: str = "analyzer-100x",
             seed: int = 7) -> dict[str, str]:
    """Render a virtual AML smear (200 white cells, ~12 fields) and write its analysis report.

    Parameters
    ----------
    out_dir
        Folder to write into (created; existing files of the demo are replaced).
    workers
        Processes for rendering and for the fields of the analysis.
    case, cells, profile, seed
        The virtual patient and how it is imaged.

    Returns
    -------
    dict
        Paths (as text): ``sample`` (fields + truth.json), ``truth``, ``report_html``, ``report_json``,
        and ``summary`` (the report's headline with the true blast percentage).
    """
    from hemotwin.diagnosis.analyze import AnalysisConfig, analyze
    from hemotwin.diagnosis.virtual import SampleConfig, render_sample

    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    sample = render_sample(SampleConfig(case=case, cells=cells, profile=profile, seed=seed), root / "sample",
                           overwrite=True, workers=workers)
    res = analyze(root / "sample", root / "report", config=AnalysisConfig(), overwrite=True, workers=workers)
    truth = sample["truth"]
    summary = (f"{case} under {profile}: true blasts {truth['true_blast_percent']:.1f} % "
               f"(realised {truth['realised_blast_percent']:.1f} %); report: {res['result']['summary']}")
    (root / "summary.txt").write_text(summary + "\n")
    out = {"sample": sample["out"], "truth": str(Path(sample["out"]) / "truth.json"), "report_html": res["html"],
           "report_json": res["json"], "summary": str(root / "summary.txt")}
    (root / "outputs.json").write_text(json.dumps(out, indent=2) + "\n")
    return out
