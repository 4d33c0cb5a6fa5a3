"""Verdicts across measurements: relative and asymmetry checks, the baseline gate, comparing two runs.

Imports ``results`` (it reads journals and result files), ``spec`` and the foundations.
"""
