"""``python3 -m pytest_meshperf.agent``: a shim over the daemon (daemon.py)."""
from __future__ import annotations

import sys

from pytest_meshperf.agent.daemon import main

if __name__ == "__main__":
    sys.exit(main())
