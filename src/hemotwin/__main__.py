"""``python -m hemotwin``: the command line."""

from hemotwin.cli import app

app()
