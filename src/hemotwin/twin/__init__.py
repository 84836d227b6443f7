"""The optical twin: specimen -> spectra -> optics -> camera, with exact ground truth.

Physics only (numpy/scipy); this layer never imports vision, diagnosis or the CLI.
"""
