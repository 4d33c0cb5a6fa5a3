"""Verdicts across measurements: relative and asymmetry checks, the baseline gate, comparing two runs, and the
diagnosis (findings from a test's matrix, re-test plans).

Imports ``results`` (it reads journals and result files), ``spec`` and the foundations.
"""
