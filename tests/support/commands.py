"""The ``meshperf`` command of the environment running the tests, never one found on PATH by chance.

A ``meshperf`` on PATH may come from an earlier install on the same machine;
the console script beside ``sys.executable`` is the one ``scripts/setup``
installed with the code under test.
"""

import json
import os
import subprocess
import sys

import jsonschema

from support.paths import SCHEMAS

MESHPERF = os.path.join(os.path.dirname(sys.executable), "meshperf")


def meshperf(*args, env=None, timeout=180):
    """Run ``meshperf ARGS`` (stdin closed, output captured as text)."""
    if not os.access(MESHPERF, os.X_OK):
        raise RuntimeError(f"no meshperf console script beside {sys.executable}: install meshperf into this "
                           "environment (bash scripts/setup test)")
    return subprocess.run([MESHPERF, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def document(result, command):
    """stdout is exactly one JSON document, valid against its schema."""
    doc = json.loads(result.stdout)
    schema = json.loads((SCHEMAS / (f"{command}.schema.json")).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(doc, schema)
    assert doc["command"] == command
    return doc
