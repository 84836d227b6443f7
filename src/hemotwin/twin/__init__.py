"""The optical twin: specimen -> spectra -> optics -> camera, with exact ground truth.

Physics only (numpy/scipy); this layer never imports vision, diagnosis or the CLI.

Scanners are :class:`~hemotwin.twin.profiles.ScannerProfile` data (four presets and their
:func:`~hemotwin.twin.profiles.randomize` neighbours); :mod:`hemotwin.twin.scanner_space` holds the
documented ranges of plausible scanners (:class:`~hemotwin.twin.scanner_space.ScannerSpace`,
docs/scanner_space.md) that :class:`~hemotwin.twin.reimage.SpaceReImager` re-images real cells through.
"""
