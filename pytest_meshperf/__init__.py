"""meshperf: a network measured as a full mesh, one pytest test per directed link.

This module stays free of heavy imports: the node agent ships with
``pytest_meshperf/__init__.py``, ``agent/`` and ``tools/`` only.
"""

__version__ = "0.1.0"
