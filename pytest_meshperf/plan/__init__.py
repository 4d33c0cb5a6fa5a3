"""Which directed pairs a run measures and in which order: pairs, rounds, schedules, link ids and selection.

Imports ``cluster`` and the foundations.
"""
