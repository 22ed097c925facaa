"""Dual validation of the two uncertainties, baselines, calibration, report."""
