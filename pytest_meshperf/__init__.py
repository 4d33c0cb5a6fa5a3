"""meshperf: a network measured as a full mesh, one pytest test per directed link.

This module stays free of heavy imports: the node agent ships with
``pytest_meshperf/__init__.py``, ``agent/`` and ``tools/`` only.
"""
from __future__ import annotations

import os

__version__ = "0.1.0"
# Where the package's files are: modules that ship or read them (transport/bundle.py, spec/profiles.py) start here.
PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
