"""Measuring: the measurement model, one pair's run on its agents, group runs (burst, incast, rounds), and
whether a figure is to be trusted (validity).

Imports ``plan``, ``spec``, ``tools``, ``transport`` (the RPC client) and the foundations.
"""
