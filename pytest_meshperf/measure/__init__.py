"""Measuring: the measurement model, one pair's run on its agents, and group runs (burst, incast).

Imports ``plan``, ``spec``, ``tools``, ``transport`` (the RPC client) and the foundations.
"""
