"""The ``hemotwin`` command line: a thin face over the library (typer + rich).

One module per layer (:mod:`~hemotwin.cli.twin`, :mod:`~hemotwin.cli.vision`,
:mod:`~hemotwin.cli.diagnosis`, :mod:`~hemotwin.cli.prognosis`, :mod:`~hemotwin.cli.monitoring`), each
declaring its commands on its own ``typer.Typer``; this module merges them. Shared consoles, options,
the progress bar and error translation live in :mod:`hemotwin.cli._common`. Every command calls one
library function and formats its result; heavy imports stay inside the commands so that
``hemotwin --help`` answers fast.
"""

from __future__ import annotations

import typer

from hemotwin.cli import diagnosis, monitoring, prognosis, twin, vision

app = typer.Typer(
    name="hemotwin",
    help="Optical twin of the stained blood smear (research use only).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
simulate_app = typer.Typer(help="Render synthetic cells, fields and virtual patients with exact ground truth.",
                           no_args_is_help=True)
simulate_app.add_typer(twin.simulate)
simulate_app.add_typer(diagnosis.simulate)
app.add_typer(simulate_app, name="simulate")
for _layer in (twin, vision, diagnosis, prognosis, monitoring):
    app.add_typer(_layer.app)
app.add_typer(prognosis.cohort, name="cohort")

__all__ = ["app"]

if __name__ == "__main__":  # pragma: no cover
    app()
