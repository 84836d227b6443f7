"""``make demo``: every layer on embedded defaults, end to end (the main job of the package).

Twin cells and fields under two presets and the gallery, then the clinical layers: a synthetic cohort
scored (ELN 2022/2024, IPSS-R, IPSS-M), the example patients monitored, and a virtual AML smear rendered
and analysed. This module sits above the layers it runs (like the command line) and nothing imports it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from hemotwin.errors import InputError
from hemotwin.io.outputs import output_dir

__all__ = ["run_demo"]

#: ``label -> context manager yielding a progress(done, total) callback`` (the command line's bar).
BarFactory = Callable[[str], AbstractContextManager[Callable[[int, int], None]]]


@contextmanager
def _no_bar(_label: str) -> Iterator[Callable[[int, int], None]]:
    yield lambda _done, _total: None


def _check(summary: dict, what: str, t0: float, log: Callable[[str], None]) -> None:
    dt = time.perf_counter() - t0
    log(f"[green]{summary['written']}[/] {what} in {dt:.1f} s -> [bold]{summary['out']}[/]")
    if summary["failures"]:
        from hemotwin.errors import HemotwinError

        raise HemotwinError(f"{what}: {len(summary['failures'])} item(s) failed, first: "
                            f"{summary['failures'][0]['path']}: {summary['failures'][0]['error']}")


def _clinical(root: Path, workers: int, log: Callable[[str], None]) -> dict[str, str]:
    """Prognosis, monitoring, then a virtual leukaemic smear."""
    from hemotwin.diagnosis.demo import run_demo as diagnosis_demo
    from hemotwin.monitoring.demo import run_demo as monitoring_demo
    from hemotwin.prognosis.scoring import score_cohort
    from hemotwin.prognosis.synthetic import simulate_cohort, write_cohort
    from hemotwin.prognosis.tables import read_clinical, read_molecular

    out: dict[str, str] = {}
    t1 = time.perf_counter()
    cohort = simulate_cohort(300, n_centers=3, seed=11)
    files = write_cohort(cohort, root / "prognosis" / "cohort", overwrite=True)
    # Scored from the written tables, as a user's cohort would be (read and validated).
    scores = score_cohort(read_clinical(files["clinical"]), read_molecular(files["molecular"]))
    scores.to_csv(root / "prognosis" / "scores.csv", index=False)
    out["prognosis_cohort"] = str(root / "prognosis" / "cohort")
    out["prognosis_scores"] = str(root / "prognosis" / "scores.csv")
    log(f"[green]300[/] synthetic patients scored (ELN 2022/2024, IPSS-R, IPSS-M) in "
        f"{time.perf_counter() - t1:.1f} s -> [bold]{out['prognosis_scores']}[/]")
    t1 = time.perf_counter()
    mon = monitoring_demo(root / "monitoring")
    out.update({f"monitoring_{k}": v for k, v in mon.items() if k.startswith("cohort")})
    log(f"[green]example patients[/] monitored in {time.perf_counter() - t1:.1f} s -> "
        f"[bold]{mon.get('cohort_html', root / 'monitoring')}[/]")
    t1 = time.perf_counter()
    dia = diagnosis_demo(root / "diagnosis", workers=workers)
    out.update({f"diagnosis_{k}": v for k, v in dia.items()})
    log(f"[green]virtual AML smear[/] rendered and analysed in {time.perf_counter() - t1:.1f} s")
    return out


def run_demo(out_dir: str | Path, *, overwrite: bool = False, workers: int = 1, real_cells: str | Path | None = None,
             bar: BarFactory = _no_bar, log: Callable[[str], None] = lambda _m: None) -> dict[str, str]:
    """Run the demo job into ``out_dir`` and return what it wrote (name -> path).

    Parameters
    ----------
    out_dir
        Output folder; an existing non-empty folder needs ``overwrite``.
    overwrite
        Replace the files of an earlier demo.
    workers
        Processes for rendering and analysis.
    real_cells
        A PBC-style folder of real cells (``<class>/<image>``) to show beside the twin in the gallery;
        ``None`` draws the twin only. A path that is not a folder is refused before any work.
    bar, log
        Progress-bar factory and message sink of the caller (silent by default).

    Returns
    -------
    dict
        Output name -> path, also written to ``out_dir/outputs.json``.
    """
    from hemotwin.twin.datasets import CellSetConfig, FieldSetConfig, simulate_cells, simulate_fields
    from hemotwin.twin.gallery import make_gallery
    from hemotwin.twin.profiles import list_presets, load_profile

    real = Path(real_cells) if real_cells is not None else None
    if real is not None and not real.is_dir():  # a mistyped --pbc fails before 2 minutes of work
        raise InputError("real_cells", str(real), "a folder of real cells (<class>/<image>)")
    outputs: dict[str, str] = {}
    with output_dir(out_dir, overwrite=overwrite, option="out") as root:
        for name in ("analyzer-100x", "wsi-40x"):
            prof = load_profile(name)
            size = 256 if name == "analyzer-100x" else 112
            t1 = time.perf_counter()
            with bar(f"cells  {name}") as progress:
                s = simulate_cells(CellSetConfig(profile=prof, per_class=10, size_px=size, seed=1),
                                   root / f"cells_{name}", overwrite=True, workers=workers, progress=progress)
            _check(s, f"cell crops ({name})", t1, log)
            outputs[f"cells_{name}"] = s["out"]
            t1 = time.perf_counter()
            with bar(f"fields {name}") as progress:
                s = simulate_fields(FieldSetConfig(profile=prof, n_fields=2, size_px=1024 if size == 256 else 512,
                                                   wbc_per_field=3, seed=2),
                                    root / f"fields_{name}", overwrite=True, workers=workers, progress=progress)
            _check(s, f"fields ({name})", t1, log)
            outputs[f"fields_{name}"] = s["out"]
        with bar("gallery") as progress:
            sheet = make_gallery(profiles=list_presets(), pbc_dir=real, progress=progress)
        sheet.save(root / "gallery.png")
        outputs["gallery"] = str(root / "gallery.png")
        outputs.update(_clinical(root, workers, log))
        (root / "outputs.json").write_text(json.dumps(outputs, indent=2))
    return outputs
