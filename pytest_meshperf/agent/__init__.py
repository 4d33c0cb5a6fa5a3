"""The node agent: a small daemon per node that runs and supervises tool processes.

Standard library only (psutil used when present), because deploy ships this
package, ``pytest_meshperf/tools/`` and ``pytest_meshperf/__init__.py`` to
nodes that have nothing but python3 and the tool binaries.
Run as ``python3 -m pytest_meshperf.agent``; the RPC is in ``docs/agent-api.md``.
"""
