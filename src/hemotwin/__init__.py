"""hemotwin: an optical twin of the stained blood smear, for leukemia hematology research.

For research use only; not for diagnostic use.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
