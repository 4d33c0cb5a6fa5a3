"""Run-wide control of the agents: start one per node, keep their leases, stop them; the cluster operations.

Imports ``transport``, ``tools`` and the foundations.
"""
