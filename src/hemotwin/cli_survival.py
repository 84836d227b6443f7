"""``hemotwin cohort fit|evaluate|predict``: survival models on cohort tables (registered by cli_prognosis).

Heavy imports (pandas, scikit-survival) live inside the command functions.
"""

from __future__ import annotations

import typer


def register(cohort_app: typer.Typer) -> None:
    """Add the survival-model commands to the ``hemotwin cohort`` sub-app."""
