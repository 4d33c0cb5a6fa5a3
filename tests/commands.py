"""The ``meshperf`` command of the environment running the tests, never one found on PATH by chance.

A ``meshperf`` on PATH may come from an earlier install on the same machine;
the console script beside ``sys.executable`` is the one ``scripts/setup``
installed with the code under test.
"""

import os
import subprocess
import sys

MESHPERF = os.path.join(os.path.dirname(sys.executable), "meshperf")


def meshperf(*args, env=None, timeout=120):
    """Run ``meshperf ARGS`` (stdin closed, output captured as text)."""
    if not os.access(MESHPERF, os.X_OK):
        raise RuntimeError("no meshperf console script beside %s: install meshperf into this environment "
                           "(bash scripts/setup test)" % sys.executable)
    return subprocess.run([MESHPERF, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)
