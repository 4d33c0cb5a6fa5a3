"""The terminal summary: a mesh wider than the terminal is shown one character per link, and every line fits."""

import json
import subprocess

from pytest_meshperf.reports.terminal import COMPACT, COMPACT_LEGEND, summary_lines
from pytest_meshperf.results.read import load_rows

from support.commands import MESHPERF
from support.meshgen import generate

WIDTH = 100


def write_mesh(tmp_path, nodes):
    mesh, expected = generate(nodes)
    path = tmp_path / "mesh.json"
    path.write_text(json.dumps(mesh))
    return path, expected


def compact_cells(lines, names):
    """(src, dst) -> the character the compact matrix shows for it."""
    matrix = lines[lines.index(COMPACT_LEGEND):]
    matrix = matrix[:next(i for i, line in enumerate(matrix) if line.startswith("worst links: "))]
    rows = {line.split()[0]: line for line in matrix if line.split() and line.split()[0] in names}
    width = len(names)
    return {(src, dst): rows[src][-width:][j] for src in names for j, dst in enumerate(names)}


def test_a_64_node_summary_fits_the_width_it_was_given(tmp_path):
    path, expected = write_mesh(tmp_path, 64)
    names, rows, counts = load_rows(str(path))
    lines = summary_lines(names, rows, counts, str(path), str(tmp_path), width=WIDTH)
    assert max(len(line) for line in lines) <= WIDTH, max(lines, key=len)
    assert COMPACT_LEGEND in lines
    cells = compact_cells(lines, names)
    for (src, dst), status in expected.items():   # every link shows its own outcome
        assert cells[(src, dst)] == COMPACT[status or "none"], (src, dst, status)
    assert all(cells[(n, n)] == COMPACT["self"] for n in names)
    worst = next(line for line in lines if line.startswith("worst links: "))
    slowest = min((r for r in rows if r.status != "error" and "throughput_bps" in r.metrics),
                  key=lambda r: r.metrics["throughput_bps"])
    assert worst.startswith(f"worst links: {slowest.src}->{slowest.dst} ")
    assert any(line.startswith("medians per node (out / in): node1 ") for line in lines)
    # without a width (a file, a pipe asking for --full): the full matrix, as wide as it is
    full = summary_lines(names, rows, counts, str(path), str(tmp_path))
    assert COMPACT_LEGEND not in full and max(len(line) for line in full) > 10 * WIDTH


def test_a_small_mesh_stays_a_full_matrix(tmp_path):
    path, _ = write_mesh(tmp_path, 3)
    names, rows, counts = load_rows(str(path))
    lines = summary_lines(names, rows, counts, str(path), str(tmp_path), width=WIDTH)
    full = summary_lines(names, rows, counts, str(path), str(tmp_path))
    matrix = lines.index(next(line for line in lines if line.startswith("CPU-bound")))
    assert COMPACT_LEGEND not in lines and lines[:matrix] == full[:matrix]   # the matrix as it is
    assert max(len(line) for line in lines) <= WIDTH   # the long lines below it wrapped


def test_meshperf_summary_fits_the_terminal_unless_full(tmp_path):
    write_mesh(tmp_path, 64)
    def summary(*args):
        return subprocess.run([MESHPERF, "summary", "mesh.json", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=120, stdin=subprocess.DEVNULL)

    compact = summary("--width", str(WIDTH))   # as on a terminal that wide: stdout here is a pipe
    assert compact.returncode == 1   # the generated mesh has failures and errors
    assert max(len(line) for line in compact.stdout.splitlines()) <= WIDTH
    assert "failures and errors:" in compact.stdout
    for whole in (summary("--full"), summary()):   # a pipe gets every matrix whole
        assert max(len(line) for line in whole.stdout.splitlines()) > 10 * WIDTH
