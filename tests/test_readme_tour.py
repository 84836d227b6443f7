"""The README's tour runs as written: every command of its ```bash blocks, in order, through the real CLI.

Each command is one test (named by its block and command), run with typer's ``CliRunner`` on
``hemotwin.cli.app`` inside one shared working folder, so later commands find what earlier ones wrote
(``cells/``, ``m0.hemo``, ``aml/`` ...); selecting one test runs the commands before it first. A test
fails when its command's exit code is not 0: an option the README names that no longer exists (a
usage error, exit 2) fails it. Three tables below say what the tour changes, and why:

* ``SHRINK``: heavy settings made small so the tour takes minutes, not hours (the options stay those
  of the README, only their values change; an option appended where the README leaves the default);
  ``PATCHES`` does the same for a library default no option reaches (the stress test's sweeps).
* ``SUBSETS``: the real data the README trains or scores on (its ``pbc/`` and ``bccd/``), cut to a few
  images per class. Other uses of those folders are mapped to the shared data next to this clone
  (``DATA``); a command that needs them is skipped when they are absent.
* ``STAND_INS``: the user's own inputs that the README names but does not create (``my_scanner_images/``,
  ``patient.json``, ``C.csv`` ...), staged just before the first command that names them.

``make`` and ``pip`` lines are set-up steps, not tour commands: they are skipped with that reason.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hemotwin.cli import app

#: Minutes, not seconds (two ``train`` runs dominate). Kept on one xdist worker under ``--dist loadgroup``:
#: any worker would otherwise replay the commands before the ones it drew.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("readme_tour")]

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The development data beside the clone.
SHARED = (REPO / ".." / "shared" / "data").resolve()
#: The README's data folders (a user's copies of the data sets) -> their folder in the shared data.
DATA = {"pbc/": "pbc", "bccd/": "bccd"}

#: Command (its leading words) -> option -> value used in the tour instead of the README's.
SHRINK: dict[tuple[str, ...], dict[str, str]] = {
    ("simulate", "cells"): {"--per-class": "2"},            # 100 -> 2 crops for each of the 15 classes
    ("simulate", "fields"): {"--fields": "1", "--size": "256"},  # 10 fields of 1024² -> one of 256²
    ("train",): {"--epochs": "1"},                          # early stopping is not what the tour checks
    ("simulate", "sample"): {"--cells": "40"},              # 200 -> 40 white cells (3 fields)
    ("calibrate-chain",): {"--per-class": "2"},             # 300 -> 2 twin cells per class
    ("stress",): {"--per-class": "1"},                      # 8 -> 1 cell per class and sweep point
    ("cohort", "simulate"): {"--patients": "400"},          # 3000 -> 400 synthetic patients
    ("cohort", "evaluate"): {"--methods": "cox"},           # random forests and boosting take minutes
}


def _two_sweeps(default_sweeps: Callable) -> Callable:
    """The stress test's first two sweeps at their two ends (all eight sweeps take ~60 renders per cell)."""
    from hemotwin.vision.stress import Sweep

    def sweeps(profile):
        return [Sweep(s.name, s.path, (s.values[0], s.values[-1]), s.unit) for s in default_sweeps(profile)[:2]]
    return sweeps


#: Command -> (module, attribute, wrapper): library defaults a command has no option for, made small
#: for the tour (the command, its options and its outputs are still the README's).
PATCHES: dict[tuple[str, ...], tuple[str, str, Callable[[Callable], Callable]]] = {
    ("stress",): ("hemotwin.vision.stress", "default_sweeps", _two_sweeps),
}

#: (command, README path) -> (folder name in the tour, images per class): real data cut to a few images.
SUBSETS: dict[tuple[tuple[str, ...], str], tuple[str, int]] = {
    (("train",), "pbc/"): ("pbc_subset", 5),
    (("evaluate",), "bccd/"): ("bccd_subset", 4),
}

#: The README's risk example patient (docs/prognosis.md, "Patient JSON").
RISK_PATIENT = {
    "id": "P-001", "disease": "MDS", "karyotype": "46,XY,del(5)(q13q33)[18]/46,XY[2]",
    "mutations": [{"gene": "SF3B1", "vaf": 0.38, "effect": "non_synonymous_codon", "protein_change": "p.K700E"},
                  {"gene": "FLT3", "vaf": 0.21, "effect": "ITD"}],
    "sequenced_genes": "all", "bm_blast_pct": 3, "hb_g_dl": 9.4, "plt_1e9_per_l": 310, "anc_1e9_per_l": 2.1,
    "wbc_1e9_per_l": 4.0, "age_years": 74, "sex": "M",
}


class NeedsSharedData(Exception):
    """A stand-in or subset needs the shared data, which is absent."""


def _image_folder_subset(src: Path, dest: Path, per_class: int) -> None:
    """The first ``per_class`` images of each class folder of ``src`` (an ImageFolder) copied to ``dest``."""
    if not src.is_dir():
        raise NeedsSharedData(str(src))
    roots = [src / "wbc_crops"] if (src / "wbc_crops").is_dir() else [src]
    for root in roots:
        for cls in sorted(p for p in root.iterdir() if p.is_dir()):
            files = sorted(f for f in cls.iterdir() if f.suffix.lower() in {".jpg", ".jpeg", ".png"})[:per_class]
            (dest / cls.name).mkdir(parents=True, exist_ok=True)
            for f in files:
                shutil.copy2(f, dest / cls.name / f.name)


def _scanner_images(work: Path) -> None:
    """Five smear fields of "your scanner": small twin fields under the phone preset, thin enough to show glass.

    Real BCCD fields would be the natural stand-in, but ``calibrate`` finds too few whole red cells
    in them without ``--um-per-px`` (their pixel size is not in the files), which the README line
    does not give.
    """
    from hemotwin.twin.datasets import FieldSetConfig, simulate_fields
    from hemotwin.twin.profiles import load_profile

    # Few and small (77 µm, one white cell each): ``train --scanner`` fits its style to every one of them.
    cfg = FieldSetConfig(profile=load_profile("phone-40x"), n_fields=5, size_px=256, wbc_per_field=1,
                         rbc_per_10k_um2=90.0, seed=3)
    simulate_fields(cfg, work / "_stand_in" / "scanner_fields", overwrite=True)
    shutil.copytree(work / "_stand_in" / "scanner_fields" / "images", work / "my_scanner_images")


def _copy_of(name: str, *, into: str) -> Callable[[Path], None]:
    """A stand-in that copies a tour output (e.g. the teacher seeds: copies of the one the README trains)."""
    def make(work: Path) -> None:
        src = work / name
        if not src.exists():
            return  # the command then fails naming the missing file, and the earlier failure explains it
        if src.is_dir():
            shutil.copytree(src, work / into)
        else:
            shutil.copy2(src, work / into)
    return make


def _crops(work: Path) -> None:
    """Cell crops to classify: a few of the tour's own rendered cells."""
    (work / "crops").mkdir()
    for f in sorted((work / "cells").glob("*/*_00000[01].png"))[:12]:
        shutil.copy2(f, work / "crops" / f.name)


def _scans(work: Path) -> None:
    """A folder of fields: the ones the tour's virtual AML sample rendered."""
    shutil.copytree(work / "aml" / "fields", work / "scans")


def _cohort_tables(work: Path, folder: str) -> dict[str, Path]:
    from hemotwin.prognosis.synthetic import simulate_cohort, write_cohort

    return write_cohort(simulate_cohort(60, n_centers=2, seed=5), work / "_stand_in" / folder, overwrite=True)


def _cohort_c_m(work: Path) -> None:
    files = _cohort_tables(work, "score")
    shutil.copy2(files["clinical"], work / "C.csv")
    shutil.copy2(files["molecular"], work / "M.csv")


def _new_patients(work: Path) -> None:
    files = _cohort_tables(work, "new")
    (work / "new").mkdir()
    shutil.copy2(files["clinical"], work / "new" / "clinical.csv")
    shutil.copy2(files["molecular"], work / "new" / "molecular.csv")


def _monitoring_examples() -> list[Path]:
    return sorted(Path(str(p)) for p in (resources.files("hemotwin.monitoring") / "examples").iterdir())


def _risk_patient(work: Path) -> None:
    (work / "patient.json").write_text(json.dumps(RISK_PATIENT))


def _monitor_patient(work: Path) -> None:
    shutil.copy2(_monitoring_examples()[0], work / "patient.json")


def _patients(work: Path) -> None:
    (work / "patients").mkdir()
    for f in _monitoring_examples():
        shutil.copy2(f, work / "patients" / f.name)


#: (command or None for any, README token) -> what stages it. ``patient.json`` is a risk patient for
#: ``risk`` and a timeline for ``monitor`` (two formats, one README name): staged afresh for each.
STAND_INS: dict[tuple[tuple[str, ...] | None, str], Callable[[Path], None]] = {
    (None, "my_scanner_images/"): _scanner_images,
    (None, "m1.hemo"): _copy_of("m0.hemo", into="m1.hemo"),
    (None, "m2.hemo"): _copy_of("m0.hemo", into="m2.hemo"),
    (None, "crops/"): _crops,
    (None, "scans/"): _scans,
    (None, "C.csv"): _cohort_c_m,
    (None, "new/clinical.csv"): _new_patients,
    (("risk",), "patient.json"): _risk_patient,
    (("monitor",), "patient.json"): _monitor_patient,
    (None, "patients/"): _patients,
}
#: Stand-ins made afresh before every command that names them (the others are made once).
RESTAGED = {"patient.json"}

#: What a README command writes, by its options (a later command that names it needs it).
OUTPUT_OPTIONS = ("--out", "-o")


# ------------------------------------------------------------------------------------------- parsing


@dataclass
class Command:
    """One command line of a README ```bash block."""

    section: str
    line: int
    text: str
    argv: list[str]
    stdout_to: str | None = None
    skip: str | None = None

    @property
    def expected_exit(self) -> int:
        """0, or the exit code the README's comment on the line names (``# ... exit 3 ...``)."""
        m = re.search(r"#.*\bexit (\d)\b", self.text)
        return int(m.group(1)) if m else 0

    @property
    def words(self) -> tuple[str, ...]:
        """The command's leading words (``("simulate", "cells")``), before its first option or argument."""
        out = []
        for tok in self.argv[1:]:
            if tok.startswith("-") or "/" in tok or "." in tok:
                break
            out.append(tok)
        return tuple(out)

    @property
    def id(self) -> str:
        return f"{self.section}-{self.line}: {' '.join(self.argv[:1] + list(self.words))}"


def readme_commands(text: str) -> list[Command]:
    """Every command line of the ```bash blocks of ``text``, continuation lines joined, comments dropped.

    Each is named by its section: the README's last ``## heading`` or ``**Bold**`` lead before the block.
    """
    commands = []
    for b, match in enumerate(re.finditer(r"^```bash\n(.*?)^```", text, flags=re.M | re.S), start=1):
        leads = re.findall(r"^(?:## (.+)|\*\*(\w+)\*\*)", text[: match.start()], flags=re.M)
        section = next((h or w for h, w in reversed(leads)), f"block{b}").strip().lower().replace(" ", "-")
        logical = re.sub(r"\\\n\s*", " ", match.group(1))
        k = 0
        for raw in logical.splitlines():
            tokens = shlex.split(raw, comments=True)
            if not tokens:
                continue
            k += 1
            stdout_to = None
            if ">" in tokens:
                at = tokens.index(">")
                stdout_to, tokens = tokens[at + 1], tokens[:at]
            skip = None
            if tokens[0] in ("make", "pip", "python", "python3", "source"):
                skip = f"a set-up step ({tokens[0]}), not a tour command"
            elif tokens[0] != "hemotwin":
                raise AssertionError(f"README ({section}): a command the tour cannot run: {raw.strip()!r}")
            commands.append(Command(section, k, raw.strip(), tokens, stdout_to, skip))
    return commands


COMMANDS = readme_commands(README.read_text())


def test_the_readme_has_a_tour_to_run():
    ran = [c for c in COMMANDS if c.skip is None]
    assert len(ran) >= 20, "the README's ```bash blocks lost their hemotwin commands"
    assert {c.words[:1] for c in ran} >= {("simulate",), ("train",), ("analyze",), ("risk",), ("monitor",)}


def test_the_parser_reads_continuations_comments_and_redirects():
    text = ("```bash\nhemotwin a --x 1 \\\n    --y 'two words'   # note\nhemotwin b show z > f.yaml\n"
            "make demo   # set up\n```\n")
    a, b, c = readme_commands(text)
    assert a.argv == ["hemotwin", "a", "--x", "1", "--y", "two words"]
    assert b.argv == ["hemotwin", "b", "show", "z"] and b.stdout_to == "f.yaml"
    assert c.skip and "make" in c.skip


# ------------------------------------------------------------------------------------------- running


def _set_option(argv: list[str], option: str, value: str) -> list[str]:
    if option in argv:
        at = argv.index(option)
        return [*argv[: at + 1], value, *argv[at + 2 :]]
    return [*argv, option, value]


@dataclass
class Outcome:
    """What running one tour command gave."""

    skipped: str | None = None
    argv: list[str] = field(default_factory=list)
    exit_code: int | None = None
    output: str = ""
    seconds: float = 0.0


class Tour:
    """Runs the README's commands in order in one folder, each once, on demand."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.done: dict[int, Outcome] = {}
        self.staged: set[str] = set()
        self.missing: dict[str, str] = {}  # output of a skipped command -> why it was skipped

    def outcome(self, index: int) -> Outcome:
        for i in range(index + 1):
            if i not in self.done:
                self.done[i] = self._run(COMMANDS[i])
        return self.done[index]

    def failures_before(self, index: int) -> list[str]:
        return [f"{COMMANDS[i].text} -> exit {o.exit_code}" for i, o in self.done.items()
                if i < index and o.exit_code not in (None, COMMANDS[i].expected_exit)]

    def _argv(self, cmd: Command) -> list[str]:
        argv = list(cmd.argv)
        for (words, path), (folder, per_class) in SUBSETS.items():
            if cmd.words[: len(words)] == words and path in argv:
                if not (self.work / folder).exists():
                    _image_folder_subset(SHARED / DATA[path], self.work / folder, per_class)
                argv = [folder if tok == path else tok for tok in argv]
        for words, options in SHRINK.items():
            if cmd.words[: len(words)] == words:
                for option, value in options.items():
                    argv = _set_option(argv, option, value)
        mapped = []
        for tok in argv:
            if tok in DATA:
                if not SHARED.is_dir():
                    raise NeedsSharedData(tok)
                tok = str(SHARED / DATA[tok])
            mapped.append(tok)
        return mapped

    def _stage(self, cmd: Command) -> None:
        for (words, token), make in STAND_INS.items():
            if token not in cmd.argv[1:] or (words is not None and cmd.words[: len(words)] != words):
                continue
            if token in self.staged and token not in RESTAGED:
                continue
            target = self.work / token.rstrip("/")
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            make(self.work)
            self.staged.add(token)

    def _run(self, cmd: Command) -> Outcome:
        if cmd.skip:
            return Outcome(skipped=cmd.skip)
        outputs = [cmd.argv[i + 1] for i, tok in enumerate(cmd.argv[:-1]) if tok in OUTPUT_OPTIONS]
        outputs += [cmd.stdout_to] if cmd.stdout_to else []
        needs = [tok for tok in cmd.argv[1:] if tok in self.missing]
        if needs:  # an input a skipped command would have written: skipped for the same reason
            self.missing.update(dict.fromkeys(outputs, self.missing[needs[0]]))
            return Outcome(skipped=f"needs {needs[0]}, not written: {self.missing[needs[0]]}")
        try:
            argv = self._argv(cmd)
            self._stage(cmd)
        except NeedsSharedData as exc:
            reason = f"shared data absent: {exc}"
            self.missing.update(dict.fromkeys(outputs, reason))
            return Outcome(skipped=reason)
        here = Path.cwd()
        os.chdir(self.work)
        with pytest.MonkeyPatch.context() as mp:
            for words, (module, name, wrap) in PATCHES.items():
                if cmd.words[: len(words)] == words:
                    target = importlib.import_module(module)
                    mp.setattr(target, name, wrap(getattr(target, name)))
            try:
                t0 = time.perf_counter()
                res = CliRunner().invoke(app, argv[1:])
                seconds = time.perf_counter() - t0
                if cmd.stdout_to and res.exit_code == 0:
                    Path(cmd.stdout_to).write_text(res.stdout)
            finally:
                os.chdir(here)
        output = res.output
        if res.exception is not None and not isinstance(res.exception, SystemExit):
            import traceback

            output += "".join(traceback.format_exception(res.exception))
        return Outcome(argv=argv, exit_code=res.exit_code, output=output, seconds=seconds)


def test_a_readme_option_that_no_longer_exists_fails_its_command(tmp_path):
    # The tour's own check must be able to fail: the old ``simulate fields --n`` is a usage error now.
    (cmd,) = readme_commands("```bash\nhemotwin simulate fields --n 1 --size 64 --out f/\n```\n")
    got = Tour(tmp_path)._run(cmd)
    assert got.exit_code == 2 and "No such option" in got.output


@pytest.fixture(scope="module")
def tour(tmp_path_factory) -> Tour:
    return Tour(tmp_path_factory.mktemp("tour"))


@pytest.mark.parametrize("index", range(len(COMMANDS)), ids=[c.id for c in COMMANDS])
def test_readme_command_runs(tour: Tour, index: int):
    cmd = COMMANDS[index]
    got = tour.outcome(index)
    if got.skipped:
        pytest.skip(got.skipped)
    earlier = tour.failures_before(index)
    note = "\nearlier tour commands that failed:\n  " + "\n  ".join(earlier) if earlier else ""
    # Exit 0 is the documented result of every tour command (README, "Exit codes"), unless the README's
    # comment on the line names another (a batch that lists what it skipped exits 3).
    assert got.exit_code == cmd.expected_exit, (
        f"README: {cmd.text}\nran: {' '.join(got.argv)}\nexit {got.exit_code} after "
        f"{got.seconds:.1f} s:\n{got.output[-3000:]}{note}")


def test_readme_python_example_runs(tour: Tour):
    """The "From Python" block runs as it stands (200 cells -> 40, as in ``SHRINK``)."""
    blocks = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.M | re.S)
    assert len(blocks) == 1, "the README's From Python example is one ```python block"
    code = blocks[0].replace("cells=200", "cells=40")
    here = Path.cwd()
    work = tour.work / "python"
    work.mkdir(exist_ok=True)
    os.chdir(work)
    try:
        exec(compile(code, "README.md (From Python)", "exec"), {"__name__": "readme_example"})
    finally:
        os.chdir(here)
    assert (work / "aml_py_report" / "report.html").is_file()
