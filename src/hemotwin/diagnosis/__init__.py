"""Smear analysis for diagnosis: detection, classification, differential counts, flags and reports."""
