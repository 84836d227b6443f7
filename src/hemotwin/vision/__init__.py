"""White-cell classification: data sets, scale normalisation, models, training, evaluation.

Modules by job: :mod:`~hemotwin.vision.datasets` and :mod:`~hemotwin.vision.data` (data sets,
labels), :mod:`~hemotwin.vision.geometry` (the model's input geometry), :mod:`~hemotwin.vision.augment`
(training augmentations), :mod:`~hemotwin.vision.models`, :mod:`~hemotwin.vision.fitting` and
:mod:`~hemotwin.vision.losses` (the network and its fitting), :mod:`~hemotwin.vision.training`
(the ``train`` workflow), :mod:`~hemotwin.vision.engines` (batched inference engines, ensembles,
test-time averaging), :mod:`~hemotwin.vision.inference` (using a model: ``predict``),
:mod:`~hemotwin.vision.assess` (``evaluate`` and ``stress``, on :mod:`~hemotwin.vision.evaluate`
and :mod:`~hemotwin.vision.stress`), :mod:`~hemotwin.vision.detect` (cells in a field).

Importing this package is cheap: torch is imported only by the modules that need it (models,
training, export), never here, so data-set tools and the CLI's help stay fast.
"""
