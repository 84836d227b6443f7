"""``hemotwin`` commands of the monitoring layer (registered by :mod:`hemotwin.cli`).

Heavy imports live inside the command functions so that ``hemotwin --help`` stays fast.
"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the top-level hemotwin app."""
