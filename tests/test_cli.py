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
    res = runner.invoke(app, ["simulate", "fields", "--out", str(blocker / "sub"), "--fields", "1", "--size", "64"])
    assert res.exit_code == 2
    assert "--out" in _flat(res) and "Traceback" not in res.output


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


# ------------------------------------------------------------------ option names: one meaning per name


def _commands(group, path=()):
    """Every leaf command of the click tree under ``group``, with its path."""
    for name, cmd in getattr(group, "commands", {}).items():
        if hasattr(cmd, "commands"):  # a group (typer's own click-compatible classes)
            yield from _commands(cmd, (*path, name))
        else:
            yield (*path, name), cmd


def _all_commands():
    import typer.main

    return list(_commands(typer.main.get_command(app)))


def test_option_names_have_one_meaning_everywhere():
    """``-n``/``--n`` nowhere; ``-m`` only for ``--model``; ``--molecular`` has no short form."""
    offenders = []
    for path, cmd in _all_commands():
        for param in cmd.params:
            opts = set(param.opts) | set(param.secondary_opts)
            if opts & {"-n", "--n"}:
                offenders.append(f"{' '.join(path)}: {sorted(opts)} (no -n/--n: name what is counted)")
            if "-m" in opts and "--model" not in opts:
                offenders.append(f"{' '.join(path)}: {sorted(opts)} (-m is --model only)")
            if "--molecular" in opts and len(opts) > 1:
                offenders.append(f"{' '.join(path)}: {sorted(opts)} (--molecular has no short form)")
            # typer records the annotation of each option: a model FILE is a Path (or a list of them).
            annotation = str(getattr(getattr(param, "type_descriptor", None), "annotation", "Path"))
            if "--model" in opts and "Path" not in annotation:
                offenders.append(f"{' '.join(path)}: {sorted(opts)} (--model is a model file, not {annotation})")
    assert not offenders, "\n".join(offenders)


def test_twin_commands_use_the_agreed_option_names():
    cells = runner.invoke(app, ["simulate", "cells", "--help"])
    fields = runner.invoke(app, ["simulate", "fields", "--help"])
    assert "--per-class" in _flat(cells) and "--fields" in _flat(fields)
    # The old count option is gone, not kept as an alias (one name, one meaning).
    res = runner.invoke(app, ["simulate", "fields", "--n", "1", "--out", "x"])
    assert res.exit_code == 2 and "No such option" in res.output


def test_workers_and_threads_say_processes_and_threads():
    flat = _flat(runner.invoke(app, ["simulate", "cells", "--help"])).lower()
    assert "processes" in flat and "--threads" in flat


# ------------------------------------------------------------------ exit codes: 0 done, 2 nothing done, 3 partial


def _cells(out: Path, *extra: str) -> list[str]:
    return ["simulate", "cells", "--profile", "wsi-20x", "--size", "32", "--workers", "1", "--out", str(out),
            *extra]


def test_exit_0_when_every_item_is_written(tmp_path: Path):
    res = runner.invoke(app, _cells(tmp_path / "o", "--per-class", "1", "--classes", "NGS"))
    assert res.exit_code == 0, res.output


def test_exit_3_when_some_items_are_skipped_and_each_is_listed(tmp_path: Path):
    out = tmp_path / "o"
    # A folder where one crop must go makes exactly that item fail (a real failing path, not a mock).
    (out / "NGS" / "NGS_000001.png").mkdir(parents=True)
    res = runner.invoke(app, _cells(out, "--per-class", "2", "--classes", "NGS,LYT", "--overwrite"))
    assert res.exit_code == 3, res.output
    assert "NGS/NGS_000001.png" in _flat(res) and "1item(s)skipped" in _flat(res)
    prov = json.loads((out / "provenance.json").read_text())
    assert [f["path"] for f in prov["failures"]] == ["NGS/NGS_000001.png"] and prov["written"] == 3


def test_exit_2_when_every_item_is_skipped(tmp_path: Path):
    out = tmp_path / "o"
    (out / "NGS" / "NGS_000000.png").mkdir(parents=True)
    res = runner.invoke(app, _cells(out, "--per-class", "1", "--classes", "NGS", "--overwrite"))
    assert res.exit_code == 2, res.output


def test_exit_2_for_bad_options_and_usage_errors(tmp_path: Path):
    assert runner.invoke(app, _cells(tmp_path / "o", "--size", "1")).exit_code == 2
    assert runner.invoke(app, _cells(tmp_path / "o", "--no-such-option")).exit_code == 2
    assert runner.invoke(app, ["simulate", "cells"]).exit_code == 2  # --out missing


# ------------------------------------------------------------------ pydantic errors in our words


@pytest.mark.parametrize(("args", "expected"), [
    (["simulate", "cells", "--size", "1"], "--size: got 1; expected a number >= 16"),
    (["simulate", "cells", "--randomize", "9"], "--randomize: got 9.0; expected a number <= 3"),
    (["simulate", "cells", "--per-class", "0"], "--per-class: got 0; expected a number >= 1"),
    (["simulate", "fields", "--fields", "0"], "--fields: got 0; expected a number >= 1"),
    (["simulate", "fields", "--wbc", "-1"], "--wbc: got -1; expected a number >= 0"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_range_errors_read_naturally(tmp_path: Path, args, expected):
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert res.exit_code == 2
    assert "".join(expected.split()) in _flat(res), res.output
    assert "Inputshould" not in _flat(res)
    assert not (tmp_path / "o").exists()


def test_profile_file_errors_read_naturally(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\noptics: {na: -1}\n")
    res = runner.invoke(app, ["simulate", "cells", "--profile", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "optics.na:got-1;expectedanumber>0" in _flat(res), res.output
    bad.write_text("name: bad\ncamera: {pixel_pitch_furlongs: 2}\n")
    res = runner.invoke(app, ["simulate", "cells", "--profile", str(bad), "--out", str(tmp_path / "o")])
    assert res.exit_code == 2 and "pixel_pitch_furlongs" in _flat(res), res.output
    assert "Extrainputs" not in _flat(res) and "aknownsettingname" in _flat(res)


# ------------------------------------------------------------------ fail fast, leave nothing behind


def test_bad_profile_fails_before_any_folder_is_made(tmp_path: Path):
    out = tmp_path / "a" / "b"
    for cmd in (["simulate", "cells"], ["simulate", "fields"]):
        res = runner.invoke(app, [*cmd, "--profile", "nope-99x", "--out", str(out)])
        assert res.exit_code == 2 and "Traceback" not in res.output
        assert not (tmp_path / "a").exists()


def test_gallery_checks_its_options_before_rendering(tmp_path: Path):
    out = tmp_path / "new" / "g.png"
    res = runner.invoke(app, ["gallery", "--profile", "nope-99x", "--out", str(out)])
    assert res.exit_code == 2 and "nope-99x" in _flat(res)
    res = runner.invoke(app, ["gallery", "--pbc", str(tmp_path / "no_such_pbc"), "--out", str(out)])
    assert res.exit_code == 2 and "--pbc" in _flat(res) and "no_such_pbc" in _flat(res)
    assert not (tmp_path / "new").exists()


def test_demo_refuses_a_missing_real_cell_folder_at_once(tmp_path: Path):
    out = tmp_path / "demo_out"
    res = runner.invoke(app, ["demo", "--out", str(out), "--pbc", str(tmp_path / "no_such_pbc")])
    assert res.exit_code == 2 and "--pbc" in _flat(res)
    assert not out.exists()


def test_overwrite_removes_crops_the_new_manifest_does_not_list(tmp_path: Path):
    out = tmp_path / "cells"
    assert runner.invoke(app, _cells(out, "--per-class", "3", "--classes", "NGS,LYT")).exit_code == 0
    foreign = out / "NGS" / "my_notes.txt"
    foreign.write_text("mine")
    res = runner.invoke(app, _cells(out, "--per-class", "1", "--classes", "NGS", "--overwrite"))
    assert res.exit_code == 0, res.output
    on_disk = sorted(str(p.relative_to(out)) for p in out.rglob("*.png"))
    assert on_disk == ["NGS/NGS_000000.png"]
    assert not (out / "LYT").exists() and foreign.read_text() == "mine"


def test_gallery_out_that_is_a_folder_is_refused_before_rendering(tmp_path: Path):
    res = runner.invoke(app, ["gallery", "--out", str(tmp_path), "--overwrite"])
    assert res.exit_code == 2 and "afilepath(afolderexiststhere)" in _flat(res), res.output
