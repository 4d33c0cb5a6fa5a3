"""Where the tests find the checkout, its suites and the recorded data (tests/data)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
TESTS = ROOT / "tests"
DATA = TESTS / "data"
SUITES = ROOT / "suites"
SCHEMAS = ROOT / "pytest_meshperf" / "schema"
PROFILES = ROOT / "pytest_meshperf" / "data" / "profiles"
RECORDED_MESH = DATA / "report" / "mesh-3-nodes.json"       # a real 3-node run (docs/results.md)
BASELINE, SLOW_LINK = DATA / "compare" / "baseline.json", DATA / "compare" / "slow-link.json"
