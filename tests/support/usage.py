"""A mesh test module to fill in, and what a usage error must look like (exit 4, one ERROR line, no traceback)."""

MESH_TEST = """
import pytest

@pytest.mark.meshperf({mark})
def test_link(mesh_pair, measure):
    measure()
"""


def assert_usage_error(result, *fragments):
    assert result.ret == 4, result.stdout.str() + result.stderr.str()
    text = result.stderr.str()
    assert "Traceback" not in text + result.stdout.str()
    error_lines = [line for line in text.splitlines() if line.startswith("ERROR: ")]
    assert error_lines, text
    for fragment in fragments:
        assert fragment in error_lines[0], error_lines[0]
