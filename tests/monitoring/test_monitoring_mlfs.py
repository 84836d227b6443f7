"""MLFS is a response without count recovery, not a remission (ELN 2022): wording, grouping and colour."""

from __future__ import annotations

import json

from monitoring_helpers import build, marrow
from typer.testing import CliRunner

from hemotwin.cli import app
from hemotwin.monitoring.demo import example_paths
from hemotwin.monitoring.report import CATEGORY_COLOURS, RESPONSE_GROUPS, patient_html, result_to_dict
from hemotwin.monitoring.response import assess
from hemotwin.monitoring.rules import REMISSION
from hemotwin.monitoring.timeline import load_timeline

EX06 = next(p for p in example_paths() if p.stem.startswith("EX06"))  # CR -> CRh -> MLFS


def test_mlfs_after_remission_is_not_called_in_remission():
    # Before: "MLFS (in remission since 2024-03-06)".
    r = assess(load_timeline(EX06))
    assert r.calls[-1].category == "MLFS"
    assert r.current_status == "MLFS, not a remission (no count recovery; CR reached 2024-03-06)"
    assert "in remission" not in r.calls[-1].status


def test_mlfs_wording_in_json_report_and_console(tmp_path):
    tl = load_timeline(EX06)
    r = assess(tl)
    text = json.dumps(result_to_dict(r)) + patient_html(tl, r, None, {})
    assert "MLFS (in remission" not in text and "MLFS, not a remission" in text
    res = CliRunner().invoke(app, ["monitor", str(EX06), "--out", str(tmp_path / "o")])
    assert res.exit_code == 0, res.output
    flat = " ".join(res.stdout.split())
    assert "EX06: MLFS, not a remission" in flat and "in remission" not in flat


def test_regained_counts_after_mlfs_are_remission_again():
    r = assess(build(marrow("2024-02-01"), marrow("2024-03-01", anc_1e9_per_l=0.3, platelets_1e9_per_l=30),
                     marrow("2024-04-01")))
    assert [c.category for c in r.calls] == ["CR", "MLFS", "CR"]
    assert "not a remission" in r.calls[1].status and r.calls[2].status.startswith("CR (in remission since")


def test_mlfs_is_grouped_and_coloured_apart_from_remissions():
    (remission,) = [cats for group, cats in RESPONSE_GROUPS.items() if group.startswith("remission")]
    assert set(remission) == set(REMISSION) and "MLFS" not in remission
    assert any("MLFS" in cats and "not remission" in group for group, cats in RESPONSE_GROUPS.items())
    grouped = [c for cats in RESPONSE_GROUPS.values() for c in cats]
    assert sorted(grouped) == sorted(CATEGORY_COLOURS)  # every category in exactly one group
    for cat in REMISSION:  # remissions are greens: green is the strongest channel
        r, g, b = CATEGORY_COLOURS[cat]
        assert g > r and g > b
    r, g, b = CATEGORY_COLOURS["MLFS"]
    assert r >= g > b  # a yellow, not a green
