"""``hemotwin`` commands of the prognosis layer (registered by :mod:`hemotwin.cli`).

Heavy imports live inside the command functions so that ``hemotwin risk`` answers fast
(no torch, no scikit-survival on that path).
"""

from __future__ import annotations

import typer

#: ``hemotwin cohort ...``: scoring here, survival fit/evaluate/predict in :mod:`hemotwin.cli_survival`.
cohort_app = typer.Typer(help="Cohort tables: score, and fit, evaluate and predict survival models.",
                         no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the top-level ``hemotwin`` app."""
    from hemotwin import cli_survival

    cli_survival.register(cohort_app)
    app.add_typer(cohort_app, name="cohort")
