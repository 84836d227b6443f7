"""The command line: every command has --help; bad input gives a clear message and exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from hemotwin.cli import app

runner = CliRunner()


def _flat(res) -> str:
    """CLI output without whitespace: rich wraps long lines (paths) at the terminal width."""
    return "".join(res.output.split())

COMMANDS = [[], ["version"], ["simulate"], ["simulate", "cells"], ["simulate", "fields"], ["gallery"],
            ["profiles"], ["profiles", "list"], ["profiles", "show"], ["demo"], ["train"], ["predict"], ["evaluate"],
            ["stress"], ["analyze"], ["calibrate-chain"], ["simulate", "sample"], ["risk"], ["cohort"],
            ["cohort", "score"], ["cohort", "simulate"], ["cohort", "fit"], ["cohort", "evaluate"],
            ["cohort", "predict"], ["monitor"]]


@pytest.mark.parametrize("cmd", COMMANDS, ids=lambda c: " ".join(c) or "root")
def test_every_command_has_help(cmd):
    res = runner.invoke(app, [*cmd, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage" in _flat(res)


def test_profiles_list_names_every_preset():
    res = runner.invoke(app, ["profiles", "list"])
    assert res.exit_code == 0
    for name in ("analyzer-100x", "wsi-40x", "wsi-20x", "phone-40x"):
        assert name in _flat(res)


def test_profiles_show_round_trips_through_a_file(tmp_path: Path):
    res = runner.invoke(app, ["profiles", "show", "wsi-20x", "--format", "json"])
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["camera"]["um_per_px"] == 0.5
    f = tmp_path / "mine.json"
    f.write_text(res.output)
    res2 = runner.invoke(app, ["profiles", "show", str(f), "--format", "json"])
    assert json.loads(res2.output) == data


def test_unknown_profile_is_a_clear_error(tmp_path: Path):
    res = runner.invoke(app, ["simulate", "cells", "--profile", "nope-99x", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "nope-99x" in _flat(res) and "analyzer-100x" in _flat(res)


def test_unknown_class_is_a_clear_error(tmp_path: Path):
    res = runner.invoke(app, ["simulate", "cells", "--classes", "NGS,XYZ", "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "XYZ" in _flat(res) and "MYO" in _flat(res)


def test_out_of_range_profile_field_is_named(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\noptics: {na: 1.6, immersion_index: 1.515}\n")
    res = runner.invoke(app, ["simulate", "cells", "--profile", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "optics" in _flat(res) and "immersion_index" in _flat(res)


def test_cells_end_to_end_and_no_silent_overwrite(tmp_path: Path):
    out = tmp_path / "cells"
    args = ["simulate", "cells", "--profile", "wsi-20x", "--per-class", "2", "--size", "48",
            "--classes", "NGS", "--classes", "LYT", "--workers", "1", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert len(list((out / "NGS").glob("*.png"))) == 2
    before = (out / "NGS" / "NGS_000000.png").read_bytes()
    res2 = runner.invoke(app, args)
    assert res2.exit_code == 2 and "--overwrite" in _flat(res2)
    assert (out / "NGS" / "NGS_000000.png").read_bytes() == before
    res3 = runner.invoke(app, [*args, "--overwrite"])
    assert res3.exit_code == 0
    # Same seed, same bytes.
    assert (out / "NGS" / "NGS_000000.png").read_bytes() == before


def test_unwritable_output_folder_is_a_clear_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    res = runner.invoke(app, ["simulate", "fields", "--out", str(blocker / "sub"), "--n", "1", "--size", "64"])
    assert res.exit_code == 2
    assert "--out" in _flat(res)


def test_predict_without_images_or_model_is_a_clear_error(tmp_path: Path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(app, ["predict", str(empty), "--out", str(tmp_path / "p.csv")])
    # The error names the images argument (the library's ``images`` parameter) and the empty folder.
    assert res.exit_code == 2 and "images" in _flat(res).lower() and "empty" in _flat(res)
    img = tmp_path / "cell.png"
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(img)
    res = runner.invoke(app, ["predict", str(img), "--model", str(tmp_path / "nope.hemo"),
                              "--out", str(tmp_path / "p.csv")])
    # rich wraps long lines (the tmp path): compare without whitespace.
    assert res.exit_code == 2 and "nope.hemo" in _flat(res)


def test_train_has_no_self_training_options():
    """Self-training on a scanner's unlabelled cells was measured worse (docs/experiments.md): not a user option."""
    res = runner.invoke(app, ["train", "--help"])
    assert res.exit_code == 0
    assert "--unlabelled" not in _flat(res) and "--pseudo-coverage" not in _flat(res)


def test_scanner_file_commands_have_help():
    """`calibrate` fits a scanner file; `train` and `analyze` take it as --scanner (docs/scanner.md)."""
    res = runner.invoke(app, ["calibrate", "--help"])
    assert res.exit_code == 0 and "--out" in _flat(res) and "--um-per-px" in _flat(res)
    for cmd in (["train"], ["analyze"]):
        res = runner.invoke(app, [*cmd, "--help"])
        assert res.exit_code == 0 and "--scanner" in _flat(res)


def test_calibrate_on_too_few_images_names_the_folder(tmp_path: Path):
    folder = tmp_path / "lab_fields"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((64, 64, 3), 230, np.uint8)).save(folder / f"f{i}.png")
    res = runner.invoke(app, ["calibrate", str(folder), "--out", str(tmp_path / "s.yaml")])
    assert res.exit_code == 2 and "lab_fields" in _flat(res) and "atleast5images" in _flat(res)
    assert not (tmp_path / "s.yaml").exists()
