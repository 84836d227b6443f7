"""Foundations: image and table readers/writers, pixel size, outputs, provenance, report shell."""
