"""AI layer: datasets, models, training, export and inference (torch lives here only)."""
