"""White-cell classification: data sets, scale normalisation, models, training, evaluation.

Importing this package is cheap: torch is imported only by the modules that need it (models,
training, export), never here, so data-set tools and the CLI's help stay fast.
"""
